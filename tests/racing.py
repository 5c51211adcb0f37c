"""A race between a read and a write, made certain instead of likely (for the compare-and-set tests)."""

class CompetingWriter:
    """A store whose first conditional write lets another writer in first: the race between a read and a write,
    made certain instead of likely."""

    def __init__(self, store, competitor) -> None:
        self.store, self.competitor, self.raced = store, competitor, False

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put_bytes(self, key, data, **conditions):
        if not self.raced:
            self.raced = True
            self.competitor()
        return self.store.put_bytes(key, data, **conditions)
