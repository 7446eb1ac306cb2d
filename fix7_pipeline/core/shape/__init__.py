"""Schema shape: the clone's catalog against the contract's shape, and the Great Expectations data rules."""
