"""Structural zeros (models.exclusions): pairs of classes no training row (or fewer than
rare_threshold) holds stay out of the drawn rows, conditioned or not, saved and loaded."""

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer
from synthgen.models.exclusions import Exclusions, find_exclusions
from synthgen.schema import infer_schema
from synthgen.transform import DiscreteBlock, Layout, TableTransformer


def nested(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Telco's shape: without a phone line, `lines` is always "none"; with one, never."""
    rng = np.random.default_rng(seed)
    phone = rng.random(n) < 0.7
    lines = np.where(phone, rng.choice(["one", "many"], n), "none")
    return pd.DataFrame(
        {
            "phone": np.where(phone, "yes", "no"),
            "lines": lines,
            "plan": rng.choice(["a", "b", "c", "d"], n),
            "rare": np.where(rng.random(n) < 0.004, "x", "y"),  # a few rows: never a zero
            "amount": rng.gamma(2.0, 10.0, n).round(2),
        }
    )


def broken(rows: pd.DataFrame) -> float:
    """Share of rows that break the table's structural zeros."""
    return float(((rows["phone"] == "no") != (rows["lines"] == "none")).mean())


def test_find_exclusions_flags_only_pairs_independence_would_fill():
    df = nested()
    tt = TableTransformer().fit(df, infer_schema(df))
    found = find_exclusions(tt.transform(df), tt.layout, k=5)
    names = {(tt.layout.discrete[p["a"]].column, tt.layout.discrete[p["b"]].column) for p in found}
    assert ("phone", "lines") in names or ("lines", "phone") in names
    # plan is independent of everything; "rare" has too few rows for an empty pair to mean much
    assert not any("plan" in pair or "rare" in pair for pair in names)


def test_near_zeros_under_the_threshold_are_excluded_too():
    """A pair 1-4 rows hold where independence expects dozens is kept out; one k rows hold: not."""

    def excluded(slips: int) -> bool:  # is (phone = "no", lines = "one") a structural zero?
        df = nested()
        df.loc[df.index[df["phone"] == "no"][:slips], "lines"] = "one"  # a few rows break it
        tt = TableTransformer().fit(df, infer_schema(df))
        (pair,) = find_exclusions(tt.transform(df), tt.layout, k=5)
        a, b = (tt.layout.discrete[pair[k]] for k in ("a", "b"))
        assert (a.column, b.column) == ("phone", "lines")
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(pair["excluded"]), np.uint8))
        table = bits[: a.n_classes * b.n_classes].reshape(a.n_classes, b.n_classes)
        no, one = (
            list(tt.encoders[c].categories).index(v) for c, v in (("phone", "no"), ("lines", "one"))
        )
        return bool(table[no, one])

    assert excluded(0) and excluded(3)
    assert not excluded(5)


def test_repair_redraws_from_the_masked_distribution():
    """A redrawn code follows the block's own probabilities with the excluded class removed."""
    blocks = (
        DiscreteBlock("a", 0, 0, 2, "category"),
        DiscreteBlock("b", 1, 2, 3, "category"),
    )
    layout = Layout(blocks, (), 2)
    excluded = np.zeros((2, 3), bool)
    excluded[1, 0] = True  # a = 1 never with b = 0
    found = [{"a": 0, "b": 1, "excluded": np.packbits(excluded).tobytes().hex()}]
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    logits = np.log(np.array([1.0, 1.0, 0.5, 0.3, 0.2], dtype=np.float32))
    logits_t = torch.from_numpy(logits).unsqueeze(1).expand(5, n).contiguous()
    u_b = torch.rand(n, generator=gen)
    codes_b = (u_b > 0.5).float() + (u_b > 0.8).float()  # inverse CDF of (0.5, 0.3, 0.2)
    matrix_t = torch.stack([torch.ones(n), codes_b])  # every row has a = 1
    redrawn = Exclusions(layout, found, "cpu").repair(matrix_t, logits_t, {1: u_b})
    shares = torch.bincount(matrix_t[1].long(), minlength=3).double() / n
    assert redrawn == int((codes_b == 0).sum())
    assert shares[0] == 0 and abs(shares[1] - 0.6) < 0.01 and abs(shares[2] - 0.4) < 0.01


def test_bitmask_and_table_checks_redraw_the_same_codes(monkeypatch):
    """Blocks of up to MASK_CLASSES classes check their pairs as bitmasks, wider ones with the
    tables: both redraw the same codes, conditioned blocks or not."""
    from synthgen.models import exclusions

    rng = np.random.default_rng(0)
    sizes = [3, 5, 2, 7, 4]
    starts = np.cumsum([0, *sizes])
    blocks = tuple(
        DiscreteBlock(f"c{k}", k, int(starts[k]), n, "category") for k, n in enumerate(sizes)
    )
    layout = Layout(blocks, (), len(blocks))
    found = []
    for a in range(len(sizes)):
        for b in range(a + 1, len(sizes)):
            excluded = rng.random((sizes[a], sizes[b])) < 0.25
            excluded[0, :] = excluded[:, 0] = (
                False  # class 0 stays allowed: every row can be mended
            )
            found.append({"a": a, "b": b, "excluded": np.packbits(excluded).tobytes().hex()})
    n = 5000
    gen = torch.Generator().manual_seed(1)
    logits_t = torch.randn(int(starts[-1]), n, generator=gen)
    uniforms = {k: torch.rand(n, generator=gen) for k in range(len(sizes))}
    codes = torch.stack([(uniforms[k] * m).floor() for k, m in enumerate(sizes)])

    def broken(matrix_t: torch.Tensor, fixed: frozenset) -> int:  # rows x pairs not both fixed
        out = 0
        for pair in found:
            if {pair["a"], pair["b"]} <= fixed:
                continue
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(pair["excluded"]), np.uint8))
            table = bits[: sizes[pair["a"]] * sizes[pair["b"]]].reshape(sizes[pair["a"]], -1)
            out += int(table[matrix_t[pair["a"]].long(), matrix_t[pair["b"]].long()].sum())
        return out

    default = exclusions.MASK_CLASSES
    for fixed in (frozenset(), frozenset({2, 4})):
        drawn = {}
        for mask_classes in (default, 0):  # 0: every block checks its tables
            monkeypatch.setattr(exclusions, "MASK_CLASSES", mask_classes)
            matrix_t = codes.clone()
            count = Exclusions(layout, found, "cpu").repair(matrix_t, logits_t, uniforms, fixed)
            drawn[mask_classes] = (count, matrix_t)
        (count_a, a), (count_b, b) = drawn.values()
        assert count_a == count_b > 100 and torch.equal(a, b)
        assert broken(codes, fixed) > 1000 and broken(a, fixed) == 0


@pytest.fixture(scope="module")
def fitted():
    df = nested()
    # lines determines phone: as a lookup column, phone would never break the zeros to begin with
    kw = dict(epochs=20, latent_dim=4, hidden=[32], seed=0, lookup_columns=False)
    return df, Synthesizer("vae", **kw).fit(df, progress=False), kw


def test_drawn_rows_keep_structural_zeros_and_marginals(fitted, tmp_path):
    df, synth, kw = fitted
    assert synth.info["exclusions"]
    rows = synth.sample(20_000, seed=1)
    assert broken(rows) == 0.0
    for col in ("phone", "lines"):  # the calibration counts the redrawn codes
        real = df[col].value_counts(normalize=True)
        assert (rows[col].value_counts(normalize=True) - real).abs().max() < 0.03
    # the same weak model without them breaks the pair (this test can fail)
    loose = Synthesizer("vae", structural_zeros=False, **kw).fit(df, progress=False)
    assert "exclusions" not in loose.info and broken(loose.sample(20_000, seed=1)) > 0.01
    synth.save(tmp_path / "m")
    loaded = Synthesizer.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.sample(2000, seed=3), synth.sample(2000, seed=3))


def test_conditioned_rows_keep_structural_zeros(fitted):
    df, synth, _ = fitted
    rows = synth.sample(3000, seed=2, conditions={"phone": "no"})
    assert (rows["phone"] == "no").all() and (rows["lines"] == "none").all()
    rows = synth.sample(3000, seed=2, conditions={"lines": ["one", "many"]})
    assert (rows["phone"] == "yes").all()
