"""The change: the operator's FIX7 apply and rollback, screened and run in one transaction each."""
