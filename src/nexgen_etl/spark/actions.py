"""Spark actions run side by side, each from its own driver thread."""

from __future__ import annotations

import time
from concurrent.futures import Future

from pyspark import InheritableThread
from pyspark.sql import SparkSession


class Actions:
    """Spark actions run side by side, each from its own driver thread (PySpark's pinned threads: one JVM thread
    each): while the driver plans and compiles one job, another's tasks use the cores. A small batch is mostly
    such driver work (docs/performance.md). Each action's own seconds go to timings under its name.

    As a context manager: leaving the block waits for every action started in it; a failure (in the block or in an
    action) cancels the jobs still running. Either way every thread has ended when the block is left."""

    def __init__(self, spark: SparkSession, timings: dict[str, float]) -> None:
        self.spark = spark
        self.timings = timings
        self.threads: list[InheritableThread] = []
        self.futures: list[Future] = []

    def __enter__(self) -> Actions:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                self.cancel()
                return
            try:
                self.wait()
            except BaseException:
                self.cancel()
                raise
        finally:
            self.join()

    def run(self, name: str, fn, *args):
        """fn(*args) in this thread, timed."""
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.timings[name] = round(time.monotonic() - t0, 3)

    def start(self, name: str, fn, *args) -> Future:
        """fn(*args) in a new thread; its result (or exception) in the returned future."""
        future: Future = Future()

        def target() -> None:
            try:
                future.set_result(self.run(name, fn, *args))
            except BaseException as e:  # noqa: BLE001 (handed to whoever waits for the future)
                future.set_exception(e)

        thread = InheritableThread(target=target, name=f"nexgen-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)
        self.futures.append(future)
        return future

    def wait(self) -> None:
        """Every started action finished; the first failure (in start order) raised."""
        for future in self.futures:
            future.result()

    def cancel(self) -> None:
        """Stop the jobs still running (after a failure: their output would be discarded with the staging)."""
        if any(not f.done() for f in self.futures):
            self.spark.sparkContext.cancelAllJobs()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
