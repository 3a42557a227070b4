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


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test API for the whole session (starting one per test costs seconds each)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_table(tmp_path_factory, demo_df) -> Path:
    """1,500 real rows of the demo table: a small real input for end-to-end runs."""
    path = tmp_path_factory.mktemp("input") / "churn_small.parquet"
    demo_df.sample(n=1500, random_state=0).reset_index(drop=True).to_parquet(path)
    return path
