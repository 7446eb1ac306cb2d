"""The clone: the dump restored into a throwaway database by a least-privileged role, and proven isolated."""
