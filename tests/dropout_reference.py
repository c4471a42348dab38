"""The dropout mask generator of gptx (csrc/backend/dropout_mask.h) written again in Python/NumPy, from its spec: the
tests check that every backend draws exactly these masks, and use them in float64 references."""
import numpy as np

M64 = (1 << 64) - 1


def mix64(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def key(seed: int, step: int, layer: int, site: int) -> int:
    k = mix64(seed ^ 0x6A09E667F3BCC909)
    k = mix64(k + 0x9E3779B97F4A7C15 * (step + 1))
    k = mix64(k + 0xBB67AE8584CAA73B * (layer + 1))
    return mix64(k + 0x3C6EF372FE94F82B * (site + 1))


def row_states(k: int, rows: int) -> np.ndarray:
    return np.array([mix64(k ^ ((r * 0xD1B54A32D192ED03) & M64)) >> 32 for r in range(rows)], dtype=np.uint32)


def mix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def threshold(p: float) -> int:
    p32 = float(np.float32(p))
    t = round(p32 * 2.0**32)
    return min(max(t, 1), 2**32 - 1)


def keep_mask(p, seed, step, layer, site, rows, cols) -> np.ndarray:
    """(rows, cols) bool: element (r, c) kept."""
    rs = row_states(key(seed, step, layer, site), rows)
    cols_spread = (np.arange(cols, dtype=np.uint64) * 0x9E3779B9 & 0xFFFFFFFF).astype(np.uint32)
    bits = mix32(rs[:, None] ^ cols_spread[None, :])
    return bits >= np.uint32(threshold(p))


def scale(p) -> np.float32:
    """The kept elements' factor: float32(1 / (1 - p)) with p as the kernels hold it (float32)."""
    return np.float32(1.0 / (1.0 - float(np.float32(p))))


def factors(p, seed, step, layer, site, rows, cols) -> np.ndarray:
    """(rows, cols) float64: scale where kept, 0 where dropped."""
    return np.where(keep_mask(p, seed, step, layer, site, rows, cols), float(scale(p)), 0.0)
