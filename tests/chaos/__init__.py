"""`make chaos`: the crash test of the whole system (see __main__.py)."""
