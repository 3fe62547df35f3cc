"""Benchmarks: each module has a `main()` that prints its figures. Run with `make bench`."""
