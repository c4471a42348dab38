"""Logits processing against small NumPy references, and sampled frequencies against the filtered distribution."""
import numpy as np
import pytest

from gptx.sampling import SamplingParams, apply_penalties, filter_logits, probabilities, sample, uniform


def ref_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def ref_top_k(z, k):
    kth = np.sort(z)[::-1][k - 1]
    return np.where(z >= kth, z, -np.inf)


def ref_top_p(z, p):
    # The Hugging Face formulation: sort ascending, drop tokens whose ascending cumulative mass <= 1 - p.
    order = np.argsort(z)
    cum = np.cumsum(ref_softmax(z)[order])
    drop = cum <= 1 - p
    drop[-1] = False
    out = z.copy()
    out[order[drop]] = -np.inf
    return out


def ref_min_p(z, m):
    pr = ref_softmax(z)
    return np.where(pr >= m * pr.max(), z, -np.inf)


def ref_penalties(z, hist, rep, pres, freq):
    out = z.astype(np.float64).copy()
    for t in set(hist):
        c = hist.count(t)
        out[t] = out[t] / rep if out[t] > 0 else out[t] * rep
        out[t] -= pres + freq * c
    return out


@pytest.mark.parametrize("trial", range(5))
def test_filters_match_reference(trial):
    r = np.random.default_rng(100 + trial)
    V = 50
    z = r.standard_normal(V) * 3
    hist = r.integers(0, V, size=12).tolist()
    for T in (0.5, 1.0, 1.7):
        for k in (1, 5, 50, 80):
            got = filter_logits(z, SamplingParams(temperature=T, top_k=k))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(ref_top_k(z / T, min(k, V))))
        for p in (0.05, 0.5, 0.9, 1.0):
            got = filter_logits(z, SamplingParams(temperature=T, top_p=p))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(ref_top_p(z / T, p)))
        for m in (0.0, 0.1, 0.5, 1.0):
            got = filter_logits(z, SamplingParams(temperature=T, min_p=m))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(ref_min_p(z / T, m)))
        # all three, in the order top-k, top-p, min-p, on temperature-scaled logits
        want = ref_min_p(ref_top_p(ref_top_k(z / T, 20), 0.8), 0.05)
        got = filter_logits(z, SamplingParams(temperature=T, top_k=20, top_p=0.8, min_p=0.05))
        np.testing.assert_allclose(got, want)
    for rep, pres, freq in ((1.3, 0.0, 0.0), (0.8, 0.5, 0.25), (1.0, -0.4, 1.5)):
        got = apply_penalties(z, hist, SamplingParams(repetition_penalty=rep, presence_penalty=pres,
                                                      frequency_penalty=freq))
        np.testing.assert_allclose(got, ref_penalties(z, hist, rep, pres, freq), rtol=1e-12)


def test_greedy_ignores_filters_and_takes_penalized_argmax():
    z = np.array([1.0, 3.0, 2.9, -1.0])
    assert sample(z, [], SamplingParams(temperature=0), 0, 0, 0)[0] == 1
    # token 1 already seen: 3.0 / 1.2 = 2.5 < 2.9
    assert sample(z, [1], SamplingParams(temperature=0, repetition_penalty=1.2), 0, 0, 0)[0] == 2
    assert probabilities(z, [], SamplingParams(temperature=0)).tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.7, top_k=5),
    SamplingParams(temperature=1.3, top_p=0.7),
    SamplingParams(temperature=1.0, min_p=0.1, repetition_penalty=1.5, frequency_penalty=0.3),
], ids=["plain", "top_k", "top_p", "min_p+penalties"])
def test_sampled_frequencies_match_filtered_distribution(params):
    r = np.random.default_rng(7)
    V, N = 12, 12000
    z = r.standard_normal(V) * 1.5
    hist = [0, 3, 3]
    p = probabilities(z, hist, params)
    counts = np.zeros(V)
    for pos in range(N):  # one step, many draws: position is the counter
        counts[sample(z, hist, params, 1234, 0, pos)[0]] += 1
    assert counts[p == 0].sum() == 0, "a filtered-out token was drawn"
    kept = p > 0
    expected = N * p[kept]
    chi2 = float(((counts[kept] - expected) ** 2 / expected).sum())
    df = int(kept.sum()) - 1
    # ~p < 1e-4 bound for these df (<= 11); the seed is fixed, so this is deterministic
    assert chi2 < df + 6 * np.sqrt(2 * max(df, 1)) + 10, (chi2, df, counts, expected)


def test_uniform_is_a_pure_function_of_its_key():
    u = [uniform(5, s, t) for s in range(3) for t in range(1000)]
    assert u == [uniform(5, s, t) for s in range(3) for t in range(1000)]
    assert 0 <= min(u) and max(u) < 1 and abs(np.mean(u) - 0.5) < 0.02
    assert len(set(u)) == len(u)
    assert uniform(5, 0, 1) != uniform(6, 0, 1) != uniform(5, 1, 1)


@pytest.mark.parametrize("kw, msg", [
    (dict(temperature=-0.1), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"), (dict(min_p=-0.1), "min_p"), (dict(min_p=1.1), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"), (dict(temperature=float("nan")), "temperature"),
])
def test_bad_params(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingParams(**kw)
