"""The watermark in an Airflow Variable: the state store of the DAG's runs (the CLI keeps it in a file or an object).

Imported only inside task code (never at DAG parse time), so parsing the DAG reads no Variable.
"""

from __future__ import annotations

from nexgen_etl.core.state import StaleStateError, Watermark

STATE_VARIABLE = "nexgen_etl_state"


class VariableStateStore:
    """The watermark as versioned JSON in an Airflow Variable, written with a version check."""

    def __init__(self, key: str = STATE_VARIABLE) -> None:
        self.key = key

    def read(self) -> Watermark:
        from airflow.sdk import Variable

        return Watermark.from_json(Variable.get(self.key, default=None), where=f"Variable {self.key}")

    def compare_and_set(self, expected_revision: int, new: Watermark) -> None:
        """Airflow Variables have no conditional write: this checks the revision right before writing (the
        window between the two is what max_active_runs=1 and the lease close)."""

        current = self.read()
        if current.revision != expected_revision:
            raise StaleStateError(f"Variable {self.key} is at revision {current.revision}, "
                                  f"expected {expected_revision}: another run wrote it first")
        self.force_write(new)

    def force_write(self, new: Watermark) -> None:
        """Write the state without reading it (the repair of an unreadable one)."""
        from airflow.sdk import Variable

        Variable.set(self.key, new.to_json(), description="NexGen ETL watermark (written only by the commit task)")
