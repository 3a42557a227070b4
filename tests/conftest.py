import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DEMO = ROOT / "data" / "demo" / "telco_churn.parquet"


def shared_dataset(name: str) -> Path:
    path = SHARED / f"{name}.parquet"
    if not path.exists():
        pytest.skip(f"shared dataset {path} not available")
    return path


@pytest.fixture(scope="session")
def demo_df() -> pd.DataFrame:
    return pd.read_parquet(DEMO)


@pytest.fixture(scope="session")
def credit_df() -> pd.DataFrame:
    return pd.read_parquet(shared_dataset("credit"))
