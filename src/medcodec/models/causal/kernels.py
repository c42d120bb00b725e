"""The raster-scan pixel estimator's compiled loop (Numba): one function that the encoder and
the decoder both run, pixel by pixel, so they cannot disagree.

For every pixel, in raster order:

1. **Online least squares.** The 11 differences of 12 causal neighbours to the left pixel are
   regressed on the pixel itself over a causal window (``radius`` rows above, ``radius``
   columns either side, and the pixels to its left), so the predictor follows the local
   texture and the scanner's noise of *this* image: no training. Weights sum to 1 by
   construction (prediction = left + weights . differences). The window's normal equations
   are kept as sliding sums in int64 (exact), solved with a ridge by a float64 LDL^T
   (IEEE operations in a fixed order, no fast-math: the same on every machine), and applied
   as 12-bit fixed-point weights, so the prediction itself is an integer function. A fit
   serves two pixels: the right one of each pair reuses its left neighbour's weights (half
   the solves, +0.06% bits).
2. **Bias correction** per context (error energy x sign pattern of 4 neighbours), from the
   running mean of clipped past errors, in integers (CALIC's error feedback).
3. **Scale context**: the energy of the neighbours' past errors, log-quantised into a bin;
   the encoder picks the best table per bin for this image and sends the map (side
   information).
4. **The pixel-estimation network** (models from ``causal-v2`` on): a small integer MLP reads
   the causal 3x3 window and two more neighbours relative to the corrected prediction, the
   neighbours' past errors, the error energy and the bias, and outputs a location correction
   and the index of the model's table (Laplace or, from ``causal-v4``, logistic shape); the
   energy bin then gives way to the network's index.
5. The residual (quantised with step 2D + 1 for near-lossless) is coded with rANS; from
   stream version 3 on, with the table's tails folded onto the lowest and highest symbols
   the pixel's range allows (``rans.code_symbol``): clipped air and padding at 0 cost what
   the whole lower tail is worth.

Pixels within 2 of the top, left or right edge use the median predictor (JPEG-LS's MED).
"""

from __future__ import annotations

import numpy as np

from medcodec._jit import compiled
from medcodec.entropy.rans import UNBOUNDED, code_symbol, decode_symbol

#: The 12 causal neighbours (plane, row, column offset); the first (left) is the reference.
#: Plane 0 is the slice being coded, plane 1 the previous decoded slice of a volume.
NEIGHBOURS = np.array([(0, 0, -1), (0, -1, 0), (0, -1, -1), (0, -1, 1), (0, 0, -2),
                       (0, -2, 0), (0, -1, -2), (0, -2, -1), (0, -2, 1), (0, -1, 2),
                       (0, -2, -2), (0, -2, 2)], np.int64)
#: With a previous slice: also its pixel at the same place and that pixel's 4 neighbours.
NEIGHBOURS_INTER = np.concatenate([NEIGHBOURS, np.array(
    [(1, 0, 0), (1, -1, 0), (1, 1, 0), (1, 0, -1), (1, 0, 1)], np.int64)])
#: What the fit returns when it has no answer (the caller keeps its fallback).
_NO_FIT = -(1 << 60)
#: Error-energy bins (log scale, 4 per octave above 8).
BINS = 64
#: Sign-pattern classes of the bias correction.
TEXTURES = 16
#: Fractional bits of the fixed-point weights.
WEIGHT_BITS = 12
#: Ridge: trace / K / 2**RIDGE_SHIFT (+1), keeps flat windows well posed.
RIDGE_SHIFT = 10
#: A bias class halves its sums when it has seen this many errors (follows drifts).
BIAS_RESET = 256


@compiled(inline="always")
def energy_bin(e: int) -> int:
    if e < 8:
        return e
    n = 0
    t = e
    while t:
        n += 1
        t >>= 1
    return min(8 + (n - 4) * 4 + ((e >> (n - 3)) & 3), BINS - 1)


#: Network inputs: 6 window pixels and 4 past errors (raw and log-coded), energy, bias.
#: Networks trained with near-lossless samples (``causal-v5`` on) also read the maximum
#: error D as input number FEATURES (the last): the kernel always writes it, a 22-input
#: network never reads it.
FEATURES = 22
#: Fractional bits of the network's outputs (location in pixels, table index).
OUT_FRAC = 8
#: Activations are clamped to this magnitude (``intnet.ACT_LIMIT``).
ACT_LIMIT = float(1 << 20)


@compiled(inline="always")
def _signed_code(d: int) -> int:
    return energy_bin(d) if d >= 0 else -energy_bin(-d)


@compiled()
def features_into(canvas: np.ndarray, err: np.ndarray, y: int, x: int, pf: int, p: int,
                  e: int, max_error: int, out: np.ndarray) -> None:
    """The network's integer inputs for (y, x) (missing neighbours repeat the nearest), and
    the maximum error D after them."""
    wd = canvas.shape[1]
    wv = canvas[y, x - 1] if x >= 1 else pf
    nv = canvas[y - 1, x] if y >= 1 else wv
    out[0] = wv - pf
    out[1] = nv - pf
    out[2] = (canvas[y - 1, x - 1] if (y >= 1 and x >= 1) else nv) - pf
    out[3] = (canvas[y - 1, x + 1] if (y >= 1 and x + 1 < wd) else nv) - pf
    out[4] = (canvas[y, x - 2] if x >= 2 else wv) - pf
    out[5] = (canvas[y - 2, x] if y >= 2 else nv) - pf
    out[6] = err[y, x - 1] if x >= 1 else 0
    out[7] = err[y - 1, x] if y >= 1 else 0
    out[8] = err[y - 1, x - 1] if (y >= 1 and x >= 1) else 0
    out[9] = err[y - 1, x + 1] if (y >= 1 and x + 1 < wd) else 0
    out[10] = energy_bin(e)
    out[11] = pf - p
    for i in range(10):
        out[12 + i] = _signed_code(out[i])
    out[FEATURES] = max_error


@compiled(fastmath=True)
def forward(x: np.ndarray, w1: np.ndarray, w2: np.ndarray, w3: np.ndarray,
            biases: np.ndarray, shifts: np.ndarray, h0: np.ndarray, h1: np.ndarray,
            h2: np.ndarray, out: np.ndarray) -> None:
    """The network (an ``intnet.IntMLP`` of FEATURES -> h -> h -> 2, ReLU on the hidden
    layers) on one input, exactly as it computes: float64 holding integers, every partial
    sum below 2**53 (so any order of summation, vectorised or fused, gives the same integer:
    that is what makes fast-math safe here), floor of a power-of-two scaling, clamps.
    Weights are stored (inputs, outputs), so the inner loops run over a layer's outputs
    (SIMD lanes); ``biases`` has one row per layer. The layers are written out: the same
    loops in an inlined helper measured 9% slower."""
    n_in, hidden = w1.shape
    for i in range(n_in):
        h0[i] = min(max(float(x[i]), -ACT_LIMIT), ACT_LIMIT)
    for j in range(hidden):
        h1[j] = biases[0, j]
    for i in range(n_in):
        v = h0[i]
        for j in range(hidden):
            h1[j] += v * w1[i, j]
    scale = 2.0 ** -shifts[0]
    for j in range(hidden):
        h1[j] = min(max(np.floor(h1[j] * scale), 0.0), ACT_LIMIT)
    for j in range(hidden):
        h2[j] = biases[1, j]
    for i in range(hidden):
        v = h1[i]
        for j in range(hidden):
            h2[j] += v * w2[i, j]
    scale = 2.0 ** -shifts[1]
    for j in range(hidden):
        h2[j] = min(max(np.floor(h2[j] * scale), 0.0), ACT_LIMIT)
    for j in range(2):
        out[j] = biases[2, j]
    for i in range(hidden):
        v = h2[i]
        for j in range(2):
            out[j] += v * w3[i, j]
    scale = 2.0 ** -shifts[2]
    for j in range(2):
        out[j] = min(max(np.floor(out[j] * scale), -ACT_LIMIT), ACT_LIMIT)


@compiled(inline="always")
def _median(a: int, b: int, c: int) -> int:
    hi = max(a, b)
    lo = min(a, b)
    if c >= hi:
        return lo
    if c <= lo:
        return hi
    return a + b - c


@compiled(inline="always")
def symbol_bounds(loc: int, top: int, max_error: int) -> tuple[int, int]:
    """The lowest and highest symbol a pixel predicted at ``loc`` (in 0 .. top) can have:
    those of the values 0 and ``top`` (the quantiser is monotonic, so every value's symbol
    lies between)."""
    step = 2 * max_error + 1
    return -((loc + max_error) // step), (top - loc + max_error) // step


def make_run(neighbours: np.ndarray):
    """The coding loop specialised to one neighbour set (its size is a compile-time constant,
    which keeps the inner loops tight): ``RUN`` for single slices, ``RUN_INTER`` with the
    previous slice."""
    K = neighbours.shape[0] - 1
    # the offsets as separate flat arrays: indexing a row of ``neighbours`` per use made a
    # view each time (10x slower)
    PLANE = np.ascontiguousarray(neighbours[1:, 0])
    DY = np.ascontiguousarray(neighbours[1:, 1])
    DX = np.ascontiguousarray(neighbours[1:, 2])
    _NA = K * (K + 1) // 2
    #: Sliding-sum entries per sample: the normal matrix (lower triangle), right-hand side, count.
    SUMS = _NA + K + 1
    #: Fewer window samples than this: no least-squares fit, the median predictor.
    MIN_SAMPLES = 2 * K

    @compiled()
    def _sample(canvas: np.ndarray, previous: np.ndarray, y: int, x: int,
                out: np.ndarray, d: np.ndarray) -> None:
        """The sliding-sum entries of the pixel at (y, x) as a regression sample (``d``:
        scratch for the K differences, allocated once by the caller)."""
        base = canvas[y, x - 1]
        for i in range(K):
            d[i] = _at(canvas, previous, PLANE[i], DY[i], DX[i], y, x) - base
        t = canvas[y, x] - base
        k = 0
        for i in range(K):
            di = d[i]
            for j in range(i + 1):
                out[k + j] = di * d[j]
            k += i + 1
        for i in range(K):
            out[_NA + i] = d[i] * t
        out[SUMS - 1] = 1


    @compiled()
    def _fit_predict(canvas: np.ndarray, previous: np.ndarray, y: int, x: int, up: np.ndarray,
                     cur: np.ndarray,
                     a: np.ndarray, low: np.ndarray, diag: np.ndarray, z: np.ndarray,
                     w: np.ndarray, wq: np.ndarray, fallback: int) -> int:
        """Least-squares prediction of (y, x) from the window's sums; ``fallback`` if ill-posed."""
        if up[SUMS - 1] + cur[SUMS - 1] < MIN_SAMPLES:
            return fallback
        k = 0
        trace = 0.0
        for i in range(K):
            for j in range(i + 1):
                a[i, j] = float(up[k] + cur[k])
                k += 1
            trace += a[i, i]
        ridge = trace / K * (2.0 ** -RIDGE_SHIFT) + 1.0
        # LDL^T (unit lower ``low``, diagonal ``diag``): one division per row, no square
        # roots; ``a`` is reused for low * diag products
        for j in range(K):
            d = a[j, j] + ridge
            for q in range(j):
                d -= low[j, q] * a[j, q]
            if not d > 0.0:
                return fallback
            inv = 1.0 / d
            diag[j] = inv
            for i in range(j + 1, K):
                t = a[i, j]
                for q in range(j):
                    t -= low[i, q] * a[j, q]
                a[i, j] = t  # low[i, j] * d
                low[i, j] = t * inv
        for i in range(K):
            t = float(up[_NA + i] + cur[_NA + i])
            for q in range(i):
                t -= low[i, q] * z[q]
            z[i] = t
        for i in range(K - 1, -1, -1):
            t = z[i] * diag[i]
            for q in range(i + 1, K):
                t -= low[q, i] * w[q]
            w[i] = t
        scale = float(1 << WEIGHT_BITS)
        for i in range(K):
            wq[i] = int(np.floor(min(max(w[i] * scale, -float(1 << 20)), float(1 << 20)) + 0.5))
        return _apply(canvas, previous, y, x, wq)

    @compiled(inline="always")
    def _apply(canvas: np.ndarray, previous: np.ndarray, y: int, x: int,
               wq: np.ndarray) -> int:
        """The fixed-point weights' prediction of (y, x)."""
        base = canvas[y, x - 1]
        acc = 0
        for i in range(K):
            acc += wq[i] * (_at(canvas, previous, PLANE[i], DY[i], DX[i], y, x) - base)
        return base + ((acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS)


    @compiled()
    def run(truth: np.ndarray, canvas: np.ndarray, previous: np.ndarray, top: int,
            max_error: int, radius_ls: int,
            decoding: bool, fold: bool, table_of_bin: np.ndarray, symbols: np.ndarray,
            bins: np.ndarray, locs: np.ndarray, state: np.ndarray, data: np.ndarray,
            t_radius: np.ndarray, t_offsets: np.ndarray,
            t_freqs: np.ndarray, t_starts: np.ndarray, net_w1: np.ndarray, net_w2: np.ndarray,
            net_w3: np.ndarray, net_biases: np.ndarray, net_shifts: np.ndarray,
            samples: np.ndarray) -> None:
        """Code (``decoding`` False: from ``truth``, filling ``symbols``, ``bins`` and the
        predictions ``locs``) or decode (from the rANS ``state``/``data`` with the per-bin
        tables; ``fold``: bounded symbols, see ``symbol_bounds``) one image into ``canvas``.

        ``canvas`` ends as the decoder's reconstruction in both cases. ``previous``: the
        previous decoded slice (same shape) for the volume kernel; unused by the other. With
        a network (``net_w1`` has columns; see ``forward``) a pixel's bin is the network's
        table index, else its energy bin. ``samples`` (encoder, training): when it has rows,
        each pixel's network inputs and its residual to the corrected prediction are written
        there, row ``y * width + x``.
        """
        h, wd = canvas.shape
        step = 2 * max_error + 1
        span = radius_ls + 1
        ring = np.zeros((span, wd, SUMS), np.int64)
        cols = np.zeros((wd, SUMS), np.int64)
        up = np.zeros(SUMS, np.int64)
        cur = np.zeros(SUMS, np.int64)
        a = np.zeros((K, K))
        low = np.zeros((K, K))
        diag = np.zeros(K)
        wq = np.zeros(K, np.int64)
        diffs = np.zeros(K, np.int64)
        fitted = -1
        z = np.zeros(K)
        w = np.zeros(K)
        err = np.zeros((h, wd), np.int64)
        bias_sum = np.zeros(BINS * TEXTURES, np.int64)
        bias_count = np.zeros(BINS * TEXTURES, np.int64)
        use_net = net_w1.shape[1] > 0
        n_tables = t_radius.size
        feats = np.zeros(FEATURES + 1, np.int64)
        hidden = max(net_w1.shape[1], 1)
        h0 = np.zeros(FEATURES + 1)
        h1 = np.zeros(hidden)
        h2 = np.zeros(hidden)
        net_out = np.zeros(2)
        n_feats = samples.shape[1] - 1  # sample columns: FEATURES (+ 1 with D), residual
        half = 1 << (OUT_FRAC - 1)
        for y in range(h):
            if y >= 1:
                inc = ring[(y - 1) % span]
                for x in range(wd):
                    for m in range(SUMS):
                        cols[x, m] += inc[x, m]
            if y >= span:
                dec = ring[(y - span) % span]
                for x in range(wd):
                    for m in range(SUMS):
                        cols[x, m] -= dec[x, m]
            row = ring[y % span]
            row[:, :] = 0
            up[:] = 0
            cur[:] = 0
            for x2 in range(min(wd, radius_ls)):
                for m in range(SUMS):
                    up[m] += cols[x2, m]
            for x in range(wd):
                if x + radius_ls < wd:
                    for m in range(SUMS):
                        up[m] += cols[x + radius_ls, m]
                if x - radius_ls - 1 >= 0:
                    for m in range(SUMS):
                        up[m] -= cols[x - radius_ls - 1, m]
                        cur[m] -= row[x - radius_ls - 1, m]
                if x >= 1:
                    for m in range(SUMS):
                        cur[m] += row[x - 1, m]
                # prediction
                if y == 0:
                    p = canvas[0, x - 1] if x > 0 else (top + 1) // 2
                elif x == 0:
                    p = canvas[y - 1, 0]
                else:
                    p = _median(canvas[y, x - 1], canvas[y - 1, x], canvas[y - 1, x - 1])
                interior = y >= 2 and x >= 2 and x <= wd - 3
                if interior:
                    if (x & 1) and fitted == x - 1:  # the left pixel's weights: one fit a pair
                        p = min(max(_apply(canvas, previous, y, x, wq), 0), top)
                    else:
                        fit = _fit_predict(canvas, previous, y, x, up, cur, a, low, diag, z, w,
                                           wq, _NO_FIT)
                        if fit != _NO_FIT:
                            fitted = x
                            p = min(max(fit, 0), top)
                # context: energy of the neighbours' past errors
                e = 0
                if x >= 1:
                    e += 8 * abs(err[y, x - 1])
                    if x >= 2:
                        e += 4 * abs(err[y, x - 2])
                if y >= 1:
                    e += 8 * abs(err[y - 1, x])
                    if x >= 1:
                        e += 4 * abs(err[y - 1, x - 1])
                    if x + 1 < wd:
                        e += 4 * abs(err[y - 1, x + 1])
                    if y >= 2:
                        e += 4 * abs(err[y - 2, x])
                e >>= 2
                b = energy_bin(e)
                tex = 0
                if y >= 1 and x >= 1 and x + 1 < wd:
                    tex = ((canvas[y - 1, x] > p) + 2 * (canvas[y, x - 1] > p)
                           + 4 * (canvas[y - 1, x - 1] > p) + 8 * (canvas[y - 1, x + 1] > p))
                c = b * TEXTURES + tex
                pf = p
                n_c = bias_count[c]
                if n_c > 0:
                    pf = min(max(p + (2 * bias_sum[c] + n_c) // (2 * n_c), 0), top)
                loc = pf
                coded_bin = b
                if use_net or samples.shape[0] > 0:
                    features_into(canvas, err, y, x, pf, p, e, max_error, feats)
                    if samples.shape[0] > 0:
                        k = y * wd + x
                        samples[k, :n_feats] = feats[:n_feats]
                        samples[k, n_feats] = truth[y, x] - pf
                if use_net:
                    forward(feats, net_w1, net_w2, net_w3, net_biases, net_shifts, h0, h1, h2,
                            net_out)
                    loc = min(max(pf + int(np.floor((net_out[0] + half) * 2.0 ** -OUT_FRAC)), 0),
                              top)
                    coded_bin = int(min(max(np.floor((net_out[1] + half) * 2.0 ** -OUT_FRAC), 0),
                                        n_tables - 1))
                # the residual
                if decoding:
                    q_low, q_high = UNBOUNDED, UNBOUNDED
                    if fold:
                        q_low, q_high = symbol_bounds(loc, top, max_error)
                    q = decode_symbol(table_of_bin[coded_bin], q_low, q_high, state, data,
                                      t_radius, t_offsets, t_freqs, t_starts)
                else:
                    r = truth[y, x] - loc
                    q = (abs(r) + max_error) // step
                    if r < 0:
                        q = -q
                    symbols[y, x] = q
                    bins[y, x] = coded_bin
                    locs[y, x] = loc
                v = min(max(loc + q * step, 0), top)
                canvas[y, x] = v
                err[y, x] = v - p
                limit = max(2, e)
                bias_sum[c] += min(max(v - p, -limit), limit)
                bias_count[c] = n_c + 1
                if n_c + 1 >= BIAS_RESET:
                    s = bias_sum[c]
                    bias_sum[c] = s // 2 if s >= 0 else -((-s) // 2)
                    bias_count[c] = (n_c + 1) // 2
                if interior:
                    _sample(canvas, previous, y, x, row[x], diffs)

    return run


@compiled(inline="always")
def _at(canvas: np.ndarray, previous: np.ndarray, plane: int, dy: int, dx: int, y: int,
        x: int) -> int:
    """A neighbour's value: in this slice (always causal by the neighbour set), or in the
    previous one, whose every pixel is known (clamped at its edges)."""
    if plane == 0:
        return canvas[y + dy, x + dx]
    h, wd = previous.shape
    return previous[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), wd - 1)]


RUN = make_run(NEIGHBOURS)
RUN_INTER = make_run(NEIGHBOURS_INTER)


@compiled()
def pairs(symbols: np.ndarray, bins: np.ndarray, locs: np.ndarray, table_of_bin: np.ndarray,
          top: int, max_error: int, fold: bool, t_radius: np.ndarray, t_offsets: np.ndarray,
          t_freqs: np.ndarray, t_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The rANS (start, freq) pairs of every symbol in raster order (``fold``: bounded by
    its prediction ``locs``, as the decoder does)."""
    flat_s = symbols.ravel()
    flat_b = bins.ravel()
    flat_l = locs.ravel()
    n = flat_s.size
    out_start = np.empty(3 * n, np.int64)
    out_freq = np.empty(3 * n, np.int64)
    k = 0
    low, high = UNBOUNDED, UNBOUNDED
    for i in range(n):
        if fold:
            low, high = symbol_bounds(flat_l[i], top, max_error)
        k = code_symbol(flat_s[i], table_of_bin[flat_b[i]], low, high, t_radius, t_offsets,
                        t_freqs, t_starts, out_start, out_freq, k)
    return out_start, out_freq, k
