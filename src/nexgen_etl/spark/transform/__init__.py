"""Pure PySpark transformations (DataFrame in, DataFrame out): cleaning, deduplication, roll-up, features."""
