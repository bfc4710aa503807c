"""Element-wise activations for the cells; tanh is chosen per dtype and size for speed.

Measured on the 2-core AMD EPYC this project is benchmarked on (numpy 2.4, AVX2): numpy's float64
tanh is not vectorised there (14 ns per element, exp 5 ns), so float64 tanh of more than about a
thousand elements goes through exp, which is 1.5-1.7x faster; float32 tanh is vectorised and kept.
Large |x| makes exp overflow to inf, which gives the exact limit: callers run it (and the gated
cells' exp-based sigmoids) under `np.errstate(over="ignore")`.
"""

import numpy as np

EXP_TANH_MIN_SIZE = 1024  # below this, float64 np.tanh's single call beats exp's five


def tanh(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out <- tanh(x); out may be x."""
    if out.dtype != np.float64 or out.size < EXP_TANH_MIN_SIZE:
        return np.tanh(x, out=out)
    np.multiply(x, -2, out=out)  # tanh(x) = 2 / (1 + exp(-2x)) - 1
    np.exp(out, out=out)
    out += 1
    np.divide(2, out, out=out)
    out -= 1
    return out


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """a <- sigmoid(a), in place, as 0.5 tanh(a / 2) + 0.5: no overflow for large |a|."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a
