"""`t12k run`: one command takes a collection through every stage as staged workers.

Trailers download while others are normalized, others go through shot detection and others
through the backbones, all at once, joined by bounded queues; on this machine (`engine
local`) or on a Ray cluster (`engine ray`). The run leaves what `fetch`, `shots` and
`extract` would: `OUT/videos/` with `manifest.csv`, `OUT/shots.zarr` and `OUT/features/`.

Modules, in the order of the data:

- `config`: `RunConfig` (engine, cluster, queues, actors, attempts) and `Layout` (the run's folder);
- `stages`: each stage for one trailer or a group, on the stage commands' own code, without
  global state (the same functions run in local threads and in Ray tasks and actors);
- `scheduler`: the stages joined by bounded queues, the same for every engine;
- `ledger`: the manifests, the progress display and the summary (the driver's);
- `local`, `ray_engine`: where the calls run (threads and processes here; Ray tasks and actors);
- `collection`: `run_collection`, the run itself;
- `faults`: faults injected on purpose, for the tests of lost workers and nodes.
"""

from typing import Any

from t12k.pipeline.run.config import ENGINES, STAGES, Layout, RunConfig

__all__ = ["ENGINES", "STAGES", "Layout", "RunConfig", "run_collection"]


def __getattr__(name: str) -> Any:
    # `run_collection` imports every stage (torch included); Ray's download and normalize
    # workers import this package for `stages` alone and need none of that
    if name == "run_collection":
        from t12k.pipeline.run.collection import run_collection

        return run_collection
    raise AttributeError(name)
