"""steermoe for Python: record the experts a transformers MoE model routes to, steer them, and
read steermoe's run folders as pandas DataFrames. Walkthrough: docs/python.md."""

from .recording import Recording, SampleRouting, record_routing
from .runs import Run, load_run
from .schema import SchemaError
from .steering import steer

__all__ = ["Recording", "Run", "SampleRouting", "SchemaError", "load_run", "record_routing", "steer"]
