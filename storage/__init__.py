"""Stores and dataset files: feature and shots stores (zarr), reading a whole store fast
(fastread), a feature store as a mapping from Python (featuremap: `open_features`), checking
stores (verify), locks for many writers, manifests, mtgc.csv."""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): the package's light modules load alone
    from t12k.storage.featuremap import FeatureMap, open_features
    from t12k.storage.features import FeatureStore
    from t12k.storage.manifest import Manifest
    from t12k.storage.mtgc import MTGC, read_mtgc, write_mtgc
    from t12k.storage.shots import ShotStore
    from t12k.storage.verify import VerifyReport, verify_store
    from t12k.storage.zarrstore import check_id

__getattr__ = lazy_exports(
    __name__,
    {
        "FeatureMap": "featuremap",
        "open_features": "featuremap",
        "FeatureStore": "features",
        "Manifest": "manifest",
        "MTGC": "mtgc",
        "read_mtgc": "mtgc",
        "write_mtgc": "mtgc",
        "ShotStore": "shots",
        "VerifyReport": "verify",
        "verify_store": "verify",
        "check_id": "zarrstore",
    },
)

__all__ = [
    "FeatureStore",
    "FeatureMap",
    "open_features",
    "ShotStore",
    "Manifest",
    "MTGC",
    "read_mtgc",
    "write_mtgc",
    "check_id",
    "VerifyReport",
    "verify_store",
]
