"""Stores and dataset files: feature and shots stores (zarr), reading a whole store fast
(fastread), a feature store as a mapping from Python (featuremap: `open_features`), checking
stores (verify), locks for many writers, manifests, mtgc.csv."""

from t12k.storage.featuremap import FeatureMap, open_features
from t12k.storage.features import FeatureStore
from t12k.storage.manifest import Manifest
from t12k.storage.mtgc import MTGC, read_mtgc, write_mtgc
from t12k.storage.shots import ShotStore
from t12k.storage.verify import VerifyReport, verify_store
from t12k.storage.zarrstore import check_id

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
