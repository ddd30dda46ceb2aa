// Vector helpers the kernels share (inlined where used): dot products, weighted sums of rows and rank-one updates of them, a table-free exp,
// masked softmax numerators. Pointers are byte offsets in tfjs-wasm's heap, as in index.ts.

// Sum over `cols` contiguous floats at `row`, SIMD with a scalar tail.
@inline export function rowDot(a: usize, b: usize, cols: i32): f32 {
  let acc = f32x4.splat(0);
  const simdEnd = cols & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + at), v128.load(b + at)));
  }
  let total = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  for (let j = simdEnd; j < cols; j++) total += load<f32>(a + (<usize>j << 2)) * load<f32>(b + (<usize>j << 2));
  return total;
}

// exp(x) on four lanes: Cephes' expf (range reduction x = n ln2 + r, a degree-5 polynomial for
// e^r, then 2^n through the exponent bits); relative error about 1e-7 over [-87, 88]. The loops
// below call it for their scalar tails too (lane 0 of a splat), so a row's result does not
// depend on where the SIMD part ends. Two choices keep it cheap on x64, where V8 lowers wasm's
// NaN-propagating f32x4.min/max and i32x4.trunc_sat to sequences of several instructions: the
// clamp is pmin/pmax (one minps/maxps each; a NaN still comes through, as the first operand), and
// n is rounded by adding 1.5 * 2^23 (round to nearest even, as f32x4.nearest), whose low bits
// then hold n as an integer, so 2^n's exponent bits are (bits + 127) << 23 (the magic number's
// own bits shift out).
@inline export function expv(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.3)), f32x4.splat(88.7));
  const magic = f32x4.splat(12582912); // 1.5 * 2^23
  const shifted = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504)), magic);
  const n = f32x4.sub(shifted, magic);
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375))), f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const e = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(shifted, i32x4.splat(127)), 23); // 2^n as float bits
  return f32x4.mul(e, scale);
}

@inline export function exps(x: f32): f32 {
  return f32x4.extract_lane(expv(f32x4.splat(x)), 0);
}

// sigmoid(g) = 1 / (1 + exp(-g)) on four lanes.
@inline export function sigmoidv(g: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), expv(f32x4.neg(g))));
}

// p_j = exp(s_j - shift) * mask_j in place over n scores (mask 1 or 0: masked keys get exactly 0);
// returns sum_j p_j.
@inline export function expMasked(scores: usize, mask: usize, n: i32, shift: f32): f32 {
  const vshift = f32x4.splat(shift);
  let sumv = f32x4.splat(0);
  const simdEnd = n & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    const p = f32x4.mul(expv(f32x4.sub(v128.load(scores + at), vshift)), v128.load(mask + at));
    v128.store(scores + at, p);
    sumv = f32x4.add(sumv, p);
  }
  let total = f32x4.extract_lane(sumv, 0) + f32x4.extract_lane(sumv, 1) + f32x4.extract_lane(sumv, 2) + f32x4.extract_lane(sumv, 3);
  for (let j = simdEnd; j < n; j++) {
    const at = <usize>j << 2;
    const p = exps(load<f32>(scores + at) - shift) * load<f32>(mask + at);
    store<f32>(scores + at, p);
    total += p;
  }
  return total;
}

@inline export function tailDot(a: usize, b: usize, from: i32, to: i32): f32 {
  let total: f32 = 0;
  for (let k = from; k < to; k++) total += load<f32>(a + (<usize>k << 2)) * load<f32>(b + (<usize>k << 2));
  return total;
}

// Dot products of a with the four rows b, b + stride, b + 2 stride, b + 3 stride (`cols` floats
// each), as one v128: a is loaded once for four rows, and the four sums are reduced together by
// transposing shuffles instead of four horizontal sums.
@inline export function dot4(a: usize, b: usize, stride: usize, cols: i32): v128 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  const b1 = b + stride, b2 = b1 + stride, b3 = b2 + stride;
  const simdEnd = cols & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    const x = v128.load(a + at);
    s0 = f32x4.add(s0, f32x4.mul(x, v128.load(b + at)));
    s1 = f32x4.add(s1, f32x4.mul(x, v128.load(b1 + at)));
    s2 = f32x4.add(s2, f32x4.mul(x, v128.load(b2 + at)));
    s3 = f32x4.add(s3, f32x4.mul(x, v128.load(b3 + at)));
  }
  // [s0.0 + s0.2, s1.0 + s1.2, s0.1 + s0.3, s1.1 + s1.3], and the same for s2, s3.
  const u01 = f32x4.add(v128.shuffle<f32>(s0, s1, 0, 4, 1, 5), v128.shuffle<f32>(s0, s1, 2, 6, 3, 7));
  const u23 = f32x4.add(v128.shuffle<f32>(s2, s3, 0, 4, 1, 5), v128.shuffle<f32>(s2, s3, 2, 6, 3, 7));
  let sums = f32x4.add(v128.shuffle<f32>(u01, u23, 0, 1, 4, 5), v128.shuffle<f32>(u01, u23, 2, 3, 6, 7));
  if (simdEnd < cols) {
    sums = f32x4.add(sums, f32x4(tailDot(a, b, simdEnd, cols), tailDot(a, b1, simdEnd, cols), tailDot(a, b2, simdEnd, cols), tailDot(a, b3, simdEnd, cols)));
  }
  return sums;
}

// out[j] = scale * (a . row j) for rows j = 0..n-1 at `row0` + j * stride: dot4 over blocks of
// four rows, rowDot for the rest.
@inline export function dotRows(out: usize, a: usize, row0: usize, stride: usize, n: i32, cols: i32, scale: f32): void {
  const vscale = f32x4.splat(scale);
  const blockEnd = n & ~3;
  for (let j = 0; j < blockEnd; j += 4) v128.store(out + (<usize>j << 2), f32x4.mul(dot4(a, row0 + <usize>j * stride, stride, cols), vscale));
  for (let j = blockEnd; j < n; j++) store<f32>(out + (<usize>j << 2), rowDot(a, row0 + <usize>j * stride, cols) * scale);
}

// out[c] = scale * sum_j w_j row_j[c] over rows j = 0..n-1 at `row0` + j * stride (`cols` floats
// each; weights w at `weights`). The sums stay in registers, 16 columns at a time, while j runs
// (an axpy per row would load and store `out` once per row).
@inline export function weightedRowSum(out: usize, weights: usize, row0: usize, stride: usize, n: i32, cols: i32, scale: f32): void {
  const vscale = f32x4.splat(scale);
  let c = 0;
  for (; c + 16 <= cols; c += 16) {
    const at = <usize>c << 2;
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      const w = v128.load32_splat(weights + (<usize>j << 2));
      s0 = f32x4.add(s0, f32x4.mul(w, v128.load(row)));
      s1 = f32x4.add(s1, f32x4.mul(w, v128.load(row, 16)));
      s2 = f32x4.add(s2, f32x4.mul(w, v128.load(row, 32)));
      s3 = f32x4.add(s3, f32x4.mul(w, v128.load(row, 48)));
      row += stride;
    }
    v128.store(out + at, f32x4.mul(s0, vscale));
    v128.store(out + at, f32x4.mul(s1, vscale), 16);
    v128.store(out + at, f32x4.mul(s2, vscale), 32);
    v128.store(out + at, f32x4.mul(s3, vscale), 48);
  }
  for (; c + 4 <= cols; c += 4) {
    const at = <usize>c << 2;
    let s = f32x4.splat(0);
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      s = f32x4.add(s, f32x4.mul(v128.load32_splat(weights + (<usize>j << 2)), v128.load(row)));
      row += stride;
    }
    v128.store(out + at, f32x4.mul(s, vscale));
  }
  for (; c < cols; c++) {
    const at = <usize>c << 2;
    let s: f32 = 0;
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      s += load<f32>(weights + (<usize>j << 2)) * load<f32>(row);
      row += stride;
    }
    store<f32>(out + at, s * scale);
  }
}

// row_j[c] += w_j x[c] for rows j = 0..n-1 at `row0` + j * stride (`cols` floats): the rank-one
// update of a block of rows, 16 columns of x held in registers while j runs.
@inline export function addScaledToRows(row0: usize, stride: usize, weights: usize, x: usize, n: i32, cols: i32): void {
  let c = 0;
  for (; c + 16 <= cols; c += 16) {
    const at = <usize>c << 2;
    const x0 = v128.load(x + at), x1 = v128.load(x + at, 16), x2 = v128.load(x + at, 32), x3 = v128.load(x + at, 48);
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      const w = v128.load32_splat(weights + (<usize>j << 2));
      v128.store(row, f32x4.add(v128.load(row), f32x4.mul(w, x0)));
      v128.store(row, f32x4.add(v128.load(row, 16), f32x4.mul(w, x1)), 16);
      v128.store(row, f32x4.add(v128.load(row, 32), f32x4.mul(w, x2)), 32);
      v128.store(row, f32x4.add(v128.load(row, 48), f32x4.mul(w, x3)), 48);
      row += stride;
    }
  }
  for (; c + 4 <= cols; c += 4) {
    const at = <usize>c << 2;
    const xv = v128.load(x + at);
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      v128.store(row, f32x4.add(v128.load(row), f32x4.mul(v128.load32_splat(weights + (<usize>j << 2)), xv)));
      row += stride;
    }
  }
  for (; c < cols; c++) {
    const at = <usize>c << 2;
    const xs = load<f32>(x + at);
    let row = row0 + at;
    for (let j = 0; j < n; j++) {
      store<f32>(row, load<f32>(row) + load<f32>(weights + (<usize>j << 2)) * xs);
      row += stride;
    }
  }
}

// The largest of n scores whose mask (1 or 0) is 1; -Infinity when every mask is 0.
@inline export function maskedMax(scores: usize, mask: usize, n: i32): f32 {
  const none = f32x4.splat(-Infinity);
  let maxv = none;
  const simdEnd = n & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    maxv = f32x4.max(maxv, v128.bitselect(v128.load(scores + at), none, f32x4.ne(v128.load(mask + at), f32x4.splat(0))));
  }
  let max = Mathf.max(Mathf.max(f32x4.extract_lane(maxv, 0), f32x4.extract_lane(maxv, 1)), Mathf.max(f32x4.extract_lane(maxv, 2), f32x4.extract_lane(maxv, 3)));
  for (let j = simdEnd; j < n; j++) {
    const at = <usize>j << 2;
    if (load<f32>(mask + at) != 0) max = Mathf.max(max, load<f32>(scores + at));
  }
  return max;
}

// x[j] *= factor over n floats.
@inline export function scaleInPlace(x: usize, n: i32, factor: f32): void {
  const vf = f32x4.splat(factor);
  const simdEnd = n & ~3;
  for (let j = 0; j < simdEnd; j += 4) v128.store(x + (<usize>j << 2), f32x4.mul(v128.load(x + (<usize>j << 2)), vf));
  for (let j = simdEnd; j < n; j++) store<f32>(x + (<usize>j << 2), load<f32>(x + (<usize>j << 2)) * factor);
}
