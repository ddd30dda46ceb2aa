// Fused training kernels for the tfjs wasm backend, in AssemblyScript (compiled by
// stages/lib/engine/kernels/build.ts; see kernels/README.md). The module imports tfjs-wasm's own
// memory, so every pointer below is a tensor's byte offset in that heap (`memoryOffset`), and
// outputs are written straight into tensors tfjs allocated. Each function replaces a chain of
// tfjs ops (each op a kernel call, an allocation and a pass over memory) with one pass.
// All float32; row-major; `n` counts elements, `rows` x `cols` is a 2-D view.

// ------------------------------------------------------------------ AdamW (Loshchilov & Hutter 2019, Algorithm 2)
// g = grad * gradScale (clipping); m' = b1 m + (1 - b1) g; v' = b2 v + (1 - b2) g^2;
// p' = p keep - lr (m' / c1) / (sqrt(v' / c2) + eps), keep = 1 - lr * weight_decay (1 for
// vectors). Same order of operations as optim.ts's unfused update; the caller computes 1 - b1,
// 1 - b2 and keep in float64, as the unfused ops do, so both round alike.
export function adamw(
  param: usize, grad: usize, m: usize, v: usize, outParam: usize, outM: usize, outV: usize, n: i32,
  lr: f32, beta1: f32, beta2: f32, oneMinusB1: f32, oneMinusB2: f32, eps: f32, correction1: f32, correction2: f32, keep: f32, gradScale: f32,
): void {
  const vb1 = f32x4.splat(beta1), vb2 = f32x4.splat(beta2), va1 = f32x4.splat(oneMinusB1), va2 = f32x4.splat(oneMinusB2);
  const vc1 = f32x4.splat(correction1), vc2 = f32x4.splat(correction2), veps = f32x4.splat(eps);
  const vlr = f32x4.splat(lr), vkeep = f32x4.splat(keep), vscale = f32x4.splat(gradScale);
  const simdEnd = n & ~3;
  for (let i = 0; i < simdEnd; i += 4) {
    const at = <usize>i << 2;
    const g = f32x4.mul(v128.load(grad + at), vscale);
    const m1 = f32x4.add(f32x4.mul(v128.load(m + at), vb1), f32x4.mul(g, va1));
    const v1 = f32x4.add(f32x4.mul(v128.load(v + at), vb2), f32x4.mul(f32x4.mul(g, g), va2));
    const update = f32x4.div(f32x4.div(m1, vc1), f32x4.add(f32x4.sqrt(f32x4.div(v1, vc2)), veps));
    v128.store(outM + at, m1);
    v128.store(outV + at, v1);
    v128.store(outParam + at, f32x4.sub(f32x4.mul(v128.load(param + at), vkeep), f32x4.mul(update, vlr)));
  }
  for (let i = simdEnd; i < n; i++) {
    const at = <usize>i << 2;
    const g = load<f32>(grad + at) * gradScale;
    const m1 = load<f32>(m + at) * beta1 + g * oneMinusB1;
    const v1 = load<f32>(v + at) * beta2 + g * g * oneMinusB2;
    const update = m1 / correction1 / (Mathf.sqrt(v1 / correction2) + eps);
    store<f32>(outM + at, m1);
    store<f32>(outV + at, v1);
    store<f32>(outParam + at, load<f32>(param + at) * keep - update * lr);
  }
}

/** sum(x^2) over n elements (the gradient's squared L2 norm, for clipping by global norm). */
export function sumOfSquares(x: usize, n: i32): f64 {
  let acc = f32x4.splat(0);
  const simdEnd = n & ~3;
  for (let i = 0; i < simdEnd; i += 4) {
    const a = v128.load(x + (<usize>i << 2));
    acc = f32x4.add(acc, f32x4.mul(a, a));
  }
  let total = <f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1) + <f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3);
  for (let i = simdEnd; i < n; i++) {
    const a = load<f32>(x + (<usize>i << 2));
    total += <f64>(a * a);
  }
  return total;
}

// Sum over `cols` contiguous floats at `row`, SIMD with a scalar tail.
@inline function rowDot(a: usize, b: usize, cols: i32): f32 {
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
// depend on where the SIMD part ends.
@inline function expv(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.3)), f32x4.splat(88.7));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504)));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375))), f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const e = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23); // 2^n as float bits
  return f32x4.mul(e, scale);
}

@inline function exps(x: f32): f32 {
  return f32x4.extract_lane(expv(f32x4.splat(x)), 0);
}

// sigmoid(g) = 1 / (1 + exp(-g)) on four lanes.
@inline function sigmoidv(g: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), expv(f32x4.neg(g))));
}

// ------------------------------------------------------------------ RMSNorm (Zhang & Sennrich 2019, eq. 4)
// y = x * r * w per row, r = 1 / sqrt(mean(x^2) + eps). `weight` 0: no scaling (folded weights).
// Writes r per row into `rstd` (the backward pass needs it).
export function rmsNorm(x: usize, weight: usize, y: usize, rstd: usize, rows: i32, cols: i32, eps: f32): void {
  const rowBytes = <usize>cols << 2;
  const simdEnd = cols & ~3;
  for (let row = 0; row < rows; row++) {
    const xr = x + <usize>row * rowBytes;
    const yr = y + <usize>row * rowBytes;
    const r = f32(1) / Mathf.sqrt(rowDot(xr, xr, cols) / f32(cols) + eps);
    store<f32>(rstd + (<usize>row << 2), r);
    const vr = f32x4.splat(r);
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      const scaled = f32x4.mul(v128.load(xr + at), vr);
      v128.store(yr + at, weight ? f32x4.mul(scaled, v128.load(weight + at)) : scaled);
    }
    for (let j = simdEnd; j < cols; j++) {
      const at = <usize>j << 2;
      const scaled = load<f32>(xr + at) * r;
      store<f32>(yr + at, weight ? scaled * load<f32>(weight + at) : scaled);
    }
  }
}

// Gradient of rmsNorm with weight: with u = dy * w,
// dx = r * u - x * r^3 / cols * sum(u * x);  dw = sum over rows of dy * x * r.
export function rmsNormGrad(dy: usize, x: usize, weight: usize, rstd: usize, dx: usize, dw: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  const simdEnd = cols & ~3;
  memory.fill(dw, 0, rowBytes);
  for (let row = 0; row < rows; row++) {
    const xr = x + <usize>row * rowBytes;
    const dyr = dy + <usize>row * rowBytes;
    const dxr = dx + <usize>row * rowBytes;
    const r = load<f32>(rstd + (<usize>row << 2));
    let accv = f32x4.splat(0);
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      accv = f32x4.add(accv, f32x4.mul(f32x4.mul(v128.load(dyr + at), v128.load(weight + at)), v128.load(xr + at)));
    }
    let uDotX = f32x4.extract_lane(accv, 0) + f32x4.extract_lane(accv, 1) + f32x4.extract_lane(accv, 2) + f32x4.extract_lane(accv, 3);
    for (let j = simdEnd; j < cols; j++) {
      const at = <usize>j << 2;
      uDotX += load<f32>(dyr + at) * load<f32>(weight + at) * load<f32>(xr + at);
    }
    const k = r * r * r * uDotX / f32(cols);
    const vr = f32x4.splat(r), vk = f32x4.splat(k);
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      const xj = v128.load(xr + at);
      const dyj = v128.load(dyr + at);
      v128.store(dxr + at, f32x4.sub(f32x4.mul(f32x4.mul(vr, dyj), v128.load(weight + at)), f32x4.mul(xj, vk)));
      v128.store(dw + at, f32x4.add(v128.load(dw + at), f32x4.mul(f32x4.mul(dyj, xj), vr)));
    }
    for (let j = simdEnd; j < cols; j++) {
      const at = <usize>j << 2;
      const xj = load<f32>(xr + at);
      const dyj = load<f32>(dyr + at);
      store<f32>(dxr + at, r * dyj * load<f32>(weight + at) - xj * k);
      store<f32>(dw + at, load<f32>(dw + at) + dyj * xj * r);
    }
  }
}

// ------------------------------------------------------------------ SwiGLU (Shazeer 2020, eq. 6)
// h (rows, 2 I) = [gate | up] -> out (rows, I) = silu(gate) * up, silu(g) = g * sigmoid(g).
export function swiglu(h: usize, out: usize, rows: i32, inner: i32): void {
  for (let row = 0; row < rows; row++) {
    const hr = h + (<usize>row * <usize>inner << 3);
    const or = out + (<usize>row * <usize>inner << 2);
    const up = hr + (<usize>inner << 2);
    const simdEnd = inner & ~3;
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      const g = v128.load(hr + at);
      v128.store(or + at, f32x4.mul(f32x4.mul(g, sigmoidv(g)), v128.load(up + at)));
    }
    for (let j = simdEnd; j < inner; j++) {
      const at = <usize>j << 2;
      const g = load<f32>(hr + at);
      store<f32>(or + at, g / (f32(1) + exps(-g)) * load<f32>(up + at));
    }
  }
}

// d gate = dy * up * s * (1 + g (1 - s)), d up = dy * g * s, s = sigmoid(g).
export function swigluGrad(dy: usize, h: usize, dh: usize, rows: i32, inner: i32): void {
  const one = f32x4.splat(1);
  for (let row = 0; row < rows; row++) {
    const hr = h + (<usize>row * <usize>inner << 3);
    const dhr = dh + (<usize>row * <usize>inner << 3);
    const dyr = dy + (<usize>row * <usize>inner << 2);
    const up = hr + (<usize>inner << 2);
    const dup = dhr + (<usize>inner << 2);
    const simdEnd = inner & ~3;
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      const g = v128.load(hr + at);
      const u = v128.load(up + at);
      const d = v128.load(dyr + at);
      const s = sigmoidv(g);
      v128.store(dhr + at, f32x4.mul(f32x4.mul(f32x4.mul(d, u), s), f32x4.add(one, f32x4.mul(g, f32x4.sub(one, s)))));
      v128.store(dup + at, f32x4.mul(f32x4.mul(d, g), s));
    }
    for (let j = simdEnd; j < inner; j++) {
      const at = <usize>j << 2;
      const g = load<f32>(hr + at);
      const u = load<f32>(up + at);
      const d = load<f32>(dyr + at);
      const s = f32(1) / (f32(1) + exps(-g));
      store<f32>(dhr + at, d * u * s * (f32(1) + g * (f32(1) - s)));
      store<f32>(dup + at, d * g * s);
    }
  }
}

// ------------------------------------------------------------------ token log-probabilities (the loss head)
// logits (rows, vocab), targets int32 (rows) -> logp (rows) = logits[t] - logsumexp(row); the row's
// logsumexp goes to `lse` for the backward pass.
export function tokenLogprobs(logits: usize, targets: usize, logp: usize, lse: usize, rows: i32, vocab: i32): void {
  const rowBytes = <usize>vocab << 2;
  const simdEnd = vocab & ~3;
  for (let row = 0; row < rows; row++) {
    const lr = logits + <usize>row * rowBytes;
    let maxv = f32x4.splat(-Infinity);
    for (let j = 0; j < simdEnd; j += 4) maxv = f32x4.max(maxv, v128.load(lr + (<usize>j << 2)));
    let max = Mathf.max(Mathf.max(f32x4.extract_lane(maxv, 0), f32x4.extract_lane(maxv, 1)), Mathf.max(f32x4.extract_lane(maxv, 2), f32x4.extract_lane(maxv, 3)));
    for (let j = simdEnd; j < vocab; j++) max = Mathf.max(max, load<f32>(lr + (<usize>j << 2)));
    const vmax = f32x4.splat(max);
    let sumv = f32x4.splat(0);
    for (let j = 0; j < simdEnd; j += 4) sumv = f32x4.add(sumv, expv(f32x4.sub(v128.load(lr + (<usize>j << 2)), vmax)));
    let total = f32x4.extract_lane(sumv, 0) + f32x4.extract_lane(sumv, 1) + f32x4.extract_lane(sumv, 2) + f32x4.extract_lane(sumv, 3);
    for (let j = simdEnd; j < vocab; j++) total += exps(load<f32>(lr + (<usize>j << 2)) - max);
    const l = max + Mathf.log(total);
    store<f32>(lse + (<usize>row << 2), l);
    const t = load<i32>(targets + (<usize>row << 2));
    store<f32>(logp + (<usize>row << 2), load<f32>(lr + (<usize>t << 2)) - l);
  }
}

// d logits = dlogp_row * (onehot(target) - softmax(row)), softmax = exp(logits - lse).
export function tokenLogprobsGrad(dlogp: usize, logits: usize, targets: usize, lse: usize, dlogits: usize, rows: i32, vocab: i32): void {
  const rowBytes = <usize>vocab << 2;
  const simdEnd = vocab & ~3;
  for (let row = 0; row < rows; row++) {
    const lr = logits + <usize>row * rowBytes;
    const dr = dlogits + <usize>row * rowBytes;
    const d = load<f32>(dlogp + (<usize>row << 2));
    const l = load<f32>(lse + (<usize>row << 2));
    const vl = f32x4.splat(l);
    const vd = f32x4.splat(-d);
    for (let j = 0; j < simdEnd; j += 4) {
      const at = <usize>j << 2;
      v128.store(dr + at, f32x4.mul(vd, expv(f32x4.sub(v128.load(lr + at), vl))));
    }
    for (let j = simdEnd; j < vocab; j++) store<f32>(dr + (<usize>j << 2), -d * exps(load<f32>(lr + (<usize>j << 2)) - l));
    const t = load<i32>(targets + (<usize>row << 2));
    store<f32>(dr + (<usize>t << 2), load<f32>(dr + (<usize>t << 2)) + d);
  }
}

// ------------------------------------------------------------------ RoPE (Su et al. 2021, eq. 34; HF rotate_half layout)
// x (rows = B*T, heads, hd), cos / sin (rows, hd): out = x * cos + rotate_half(x) * sin with
// rotate_half(x) = cat(-x2, x1). `direction` -1 applies the transpose (the gradient):
// dx = dy * cos + rotate_half^T(dy * sin), rotate_half^T(z) = cat(z2, -z1).
// Only the first `rotated` heads of a row rotate; the rest are copied (q|k rotate, v does not).
export function rope(x: usize, cos: usize, sin: usize, out: usize, rows: i32, heads: i32, rotated: i32, headDim: i32, direction: f32): void {
  const half = headDim >> 1;
  for (let row = 0; row < rows; row++) {
    const c = cos + (<usize>row * <usize>headDim << 2);
    const s = sin + (<usize>row * <usize>headDim << 2);
    for (let h = rotated; h < heads; h++) {
      const base = (<usize>(row * heads + h) * <usize>headDim) << 2;
      memory.copy(out + base, x + base, <usize>headDim << 2);
    }
    for (let h = 0; h < rotated; h++) {
      const base = (<usize>(row * heads + h) * <usize>headDim) << 2;
      for (let j = 0; j < half; j++) {
        const a = <usize>j << 2;
        const b = <usize>(j + half) << 2;
        const x1 = load<f32>(x + base + a);
        const x2 = load<f32>(x + base + b);
        // forward: out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2; transpose: out1 = x1 c1 + x2 s2, out2 = x2 c2 - x1 s1
        if (direction > 0) {
          store<f32>(out + base + a, x1 * load<f32>(c + a) - x2 * load<f32>(s + a));
          store<f32>(out + base + b, x2 * load<f32>(c + b) + x1 * load<f32>(s + b));
        } else {
          store<f32>(out + base + a, x1 * load<f32>(c + a) + x2 * load<f32>(s + b));
          store<f32>(out + base + b, x2 * load<f32>(c + b) - x1 * load<f32>(s + a));
        }
      }
    }
  }
}

// y += alpha * x over `cols` floats.
@inline function axpy(y: usize, x: usize, alpha: f32, cols: i32): void {
  const va = f32x4.splat(alpha);
  const simdEnd = cols & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    v128.store(y + at, f32x4.add(v128.load(y + at), f32x4.mul(v128.load(x + at), va)));
  }
  for (let j = simdEnd; j < cols; j++) {
    const at = <usize>j << 2;
    store<f32>(y + at, load<f32>(y + at) + load<f32>(x + at) * alpha);
  }
}

// p_j = exp(s_j - shift) * mask_j in place over n scores (mask 1 or 0: masked keys get exactly 0);
// returns sum_j p_j.
@inline function expMasked(scores: usize, mask: usize, n: i32, shift: f32): f32 {
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

// ------------------------------------------------------------------ causal self-attention (Vaswani et al. 2017, eq. 1;
// grouped-query heads, Ainslie et al. 2023: query head h uses kv head h / (H / Hkv), as HF repeat_kv)
// qkv (B*T, (H + 2 Hkv) hd): each row holds H query heads, Hkv key heads, Hkv value heads, RoPE
// already applied to q and k. Query i of batch row b sees key j iff j <= i and mask[b, j] is 1
// (mask (B, T), floats 1 or 0). out (B*T, H hd) = softmax(scale q k^T) v over the keys seen, in the
// layout o_proj takes (no transposes); lse (B, H, T) gets each query's log-sum-exp of scores, from
// which the backward pass recomputes the probabilities instead of storing them (FlashAttention,
// Dao et al. 2022, sec. 3.1). A query that sees no key (left padding) gets zeros and lse 0.
// scratch: T floats.
export function attention(qkv: usize, mask: usize, out: usize, lse: usize, scratch: usize, batch: i32, steps: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32): void {
  const width = (heads + 2 * kvHeads) * headDim;
  const group = heads / kvHeads;
  const hdBytes = <usize>headDim << 2;
  for (let b = 0; b < batch; b++) {
    const maskRow = mask + (<usize>(b * steps) << 2);
    const rows = qkv + (<usize>(b * steps * width) << 2);
    for (let h = 0; h < heads; h++) {
      const kOffset = <usize>((heads + h / group) * headDim) << 2;
      const vOffset = kOffset + (<usize>(kvHeads * headDim) << 2);
      for (let i = 0; i < steps; i++) {
        const q = rows + (<usize>(i * width + h * headDim) << 2);
        const o = out + <usize>((b * steps + i) * heads + h) * hdBytes;
        const lseAt = lse + (<usize>((b * heads + h) * steps + i) << 2);
        const visible = i + 1;
        let max: f32 = 0;
        let seen = false;
        for (let j = 0; j < visible; j++) {
          const s = rowDot(q, rows + (<usize>(j * width) << 2) + kOffset, headDim) * scale;
          store<f32>(scratch + (<usize>j << 2), s);
          if (load<f32>(maskRow + (<usize>j << 2)) != 0 && (!seen || s > max)) {
            max = s;
            seen = true;
          }
        }
        memory.fill(o, 0, hdBytes);
        if (!seen) {
          store<f32>(lseAt, 0);
          continue;
        }
        const total = expMasked(scratch, maskRow, visible, max);
        store<f32>(lseAt, max + Mathf.log(total));
        const inverse = f32(1) / total;
        for (let j = 0; j < visible; j++) {
          const p = load<f32>(scratch + (<usize>j << 2));
          if (p != 0) axpy(o, rows + (<usize>(j * width) << 2) + vOffset, p * inverse, headDim);
        }
      }
    }
  }
}

// Gradient of `attention` (FlashAttention-2, Dao 2023, Algorithm 2, untiled): with
// p_ij = exp(scale q_i.k_j - lse_i) (the forward's probabilities) and D_i = dO_i . O_i,
// ds_ij = p_ij (dO_i . v_j - D_i); dq_i = scale sum_j ds_ij k_j; dk_j = scale sum_i ds_ij q_i;
// dv_j = sum_i p_ij dO_i. dqkv has qkv's layout; keys and values accumulate over queries and the
// heads of their group, so it is zeroed first. scratch: T floats.
export function attentionGrad(dout: usize, qkv: usize, mask: usize, out: usize, lse: usize, dqkv: usize, scratch: usize, batch: i32, steps: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32): void {
  const width = (heads + 2 * kvHeads) * headDim;
  const group = heads / kvHeads;
  const hdBytes = <usize>headDim << 2;
  memory.fill(dqkv, 0, <usize>(batch * steps * width) << 2);
  for (let b = 0; b < batch; b++) {
    const maskRow = mask + (<usize>(b * steps) << 2);
    const rowStart = <usize>(b * steps * width) << 2;
    for (let h = 0; h < heads; h++) {
      const kOffset = <usize>((heads + h / group) * headDim) << 2;
      const vOffset = kOffset + (<usize>(kvHeads * headDim) << 2);
      for (let i = 0; i < steps; i++) {
        const qAt = rowStart + (<usize>(i * width + h * headDim) << 2);
        const q = qkv + qAt;
        const dq = dqkv + qAt;
        const headAt = <usize>((b * steps + i) * heads + h) * hdBytes;
        const dO = dout + headAt;
        const d = rowDot(dO, out + headAt, headDim);
        const visible = i + 1;
        for (let j = 0; j < visible; j++) store<f32>(scratch + (<usize>j << 2), rowDot(q, qkv + rowStart + (<usize>(j * width) << 2) + kOffset, headDim) * scale);
        expMasked(scratch, maskRow, visible, load<f32>(lse + (<usize>((b * heads + h) * steps + i) << 2)));
        for (let j = 0; j < visible; j++) {
          const p = load<f32>(scratch + (<usize>j << 2));
          if (p == 0) continue;
          const keyRow = rowStart + (<usize>(j * width) << 2);
          const ds = p * (rowDot(dO, qkv + keyRow + vOffset, headDim) - d) * scale;
          axpy(dq, qkv + keyRow + kOffset, ds, headDim);
          axpy(dqkv + keyRow + kOffset, q, ds, headDim);
          axpy(dqkv + keyRow + vOffset, dO, p, headDim);
        }
      }
    }
  }
}

// out = x * cos + xr * sin over `headDim` floats: RoPE where rotate_half(x) = xr was computed by
// the projection (frozen weights fold it in as extra output columns; see model.ts frozenWeights).
@inline function ropeFromRotated(out: usize, x: usize, xr: usize, cos: usize, sin: usize, headDim: i32): void {
  for (let j = 0; j < headDim; j++) {
    const at = <usize>j << 2;
    store<f32>(out + at, load<f32>(x + at) * load<f32>(cos + at) + load<f32>(xr + at) * load<f32>(sin + at));
  }
}

// Frozen weights' projection output (rows, (2H + 3Hkv) hd) = [q | k | v | rotate_half(q) | rotate_half(k)]
// -> (rows, (H + 2Hkv) hd) = [RoPE(q) | RoPE(k) | v], the layout `attention` takes. cos / sin (rows, hd).
export function ropeFolded(x: usize, cos: usize, sin: usize, out: usize, rows: i32, heads: i32, kvHeads: i32, headDim: i32): void {
  const rotated = heads + kvHeads;
  const inWidth = <usize>((rotated + kvHeads + rotated) * headDim) << 2;
  const outWidth = <usize>((rotated + kvHeads) * headDim) << 2;
  const hdBytes = <usize>headDim << 2;
  for (let row = 0; row < rows; row++) {
    const xr = x + <usize>row * inWidth;
    const or = out + <usize>row * outWidth;
    const c = cos + <usize>row * hdBytes;
    const s = sin + <usize>row * hdBytes;
    for (let h = 0; h < rotated; h++) ropeFromRotated(or + <usize>h * hdBytes, xr + <usize>h * hdBytes, xr + <usize>(rotated + kvHeads + h) * hdBytes, c, s, headDim);
    memory.copy(or + <usize>rotated * hdBytes, xr + <usize>rotated * hdBytes, <usize>kvHeads * hdBytes);
  }
}

// One decoding step of B rows, each adding one token after `past` cached ones, from frozen
// weights' projection output qkv (B, (2H + 3Hkv) hd) (see ropeFolded; q carries the attention
// scale). cos / sin (B, hd) at each row's new position; pastK / pastV (B, Hkv, past, hd) (unread
// when past is 0). Writes keys / values (B, Hkv, past + 1, hd): the cache with this token's RoPE'd
// key and value appended, and out (B, H hd) = softmax(q k^T) v over keys whose mask (B, past + 1)
// is 1. scratch: hd + past + 1 floats.
export function decodeAttention(qkv: usize, cos: usize, sin: usize, pastK: usize, pastV: usize, mask: usize, keys: usize, values: usize, out: usize, scratch: usize, batch: i32, heads: i32, kvHeads: i32, headDim: i32, past: i32): void {
  const group = heads / kvHeads;
  const hdBytes = <usize>headDim << 2;
  const rotatedAt = <usize>(heads + 2 * kvHeads) * hdBytes; // rotate_half(q) starts here
  const inWidth = rotatedAt + <usize>(heads + kvHeads) * hdBytes;
  const keyCount = past + 1;
  const roped = scratch;
  const scores = scratch + hdBytes;
  for (let b = 0; b < batch; b++) {
    const row = qkv + <usize>b * inWidth;
    const c = cos + <usize>b * hdBytes;
    const s = sin + <usize>b * hdBytes;
    const maskRow = mask + (<usize>(b * keyCount) << 2);
    for (let g = 0; g < kvHeads; g++) {
      const cacheAt = <usize>(b * kvHeads + g);
      const k = keys + cacheAt * <usize>keyCount * hdBytes;
      const v = values + cacheAt * <usize>keyCount * hdBytes;
      if (past > 0) {
        memory.copy(k, pastK + cacheAt * <usize>past * hdBytes, <usize>past * hdBytes);
        memory.copy(v, pastV + cacheAt * <usize>past * hdBytes, <usize>past * hdBytes);
      }
      ropeFromRotated(k + <usize>past * hdBytes, row + <usize>(heads + g) * hdBytes, row + rotatedAt + <usize>(heads + g) * hdBytes, c, s, headDim);
      memory.copy(v + <usize>past * hdBytes, row + <usize>(heads + kvHeads + g) * hdBytes, hdBytes);
    }
    for (let h = 0; h < heads; h++) {
      const cacheAt = <usize>(b * kvHeads + h / group);
      const k = keys + cacheAt * <usize>keyCount * hdBytes;
      const v = values + cacheAt * <usize>keyCount * hdBytes;
      ropeFromRotated(roped, row + <usize>h * hdBytes, row + rotatedAt + <usize>h * hdBytes, c, s, headDim);
      let max: f32 = 0;
      let seen = false;
      for (let j = 0; j < keyCount; j++) {
        const score = rowDot(roped, k + <usize>j * hdBytes, headDim);
        store<f32>(scores + (<usize>j << 2), score);
        if (load<f32>(maskRow + (<usize>j << 2)) != 0 && (!seen || score > max)) {
          max = score;
          seen = true;
        }
      }
      const o = out + <usize>(b * heads + h) * hdBytes;
      memory.fill(o, 0, hdBytes);
      if (!seen) continue;
      const inverse = f32(1) / expMasked(scores, maskRow, keyCount, max);
      for (let j = 0; j < keyCount; j++) {
        const p = load<f32>(scores + (<usize>j << 2));
        if (p != 0) axpy(o, v + <usize>j * hdBytes, p * inverse, headDim);
      }
    }
  }
}

// ------------------------------------------------------------------ the two products of an HF linear layer that need a transpose
// tfjs-wasm multiplies plain 2-D operands fast (XNNPACK) but transposes by copying, and repacks
// its right operand on every call when that operand is a new tensor (a weight's transpose, an
// activation gradient). These two read the operands in place. Register blocking: 4 x 2 (NT) and
// 4 x 8 (TN) accumulators, so accumulators and loaded values fit x64's 16 SIMD registers.

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

@inline function tailDot(a: usize, b: usize, from: i32, to: i32): f32 {
  let total: f32 = 0;
  for (let k = from; k < to; k++) total += load<f32>(a + (<usize>k << 2)) * load<f32>(b + (<usize>k << 2));
  return total;
}

// out (rows, cols) = a (rows, inner) @ b (cols, inner)^T: the forward product x W^T of a linear
// layer whose weight W is kept (out, in), as HF stores it.
export function matmulNT(a: usize, b: usize, out: usize, rows: i32, inner: i32, cols: i32): void {
  const stride = <usize>inner << 2;
  const simdEnd = inner & ~3;
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const a0 = a + <usize>r * stride, a1 = a0 + stride, a2 = a1 + stride, a3 = a2 + stride;
    const o = out + (<usize>(r * cols) << 2);
    const oStride = <usize>cols << 2;
    let c = 0;
    for (; c + 2 <= cols; c += 2) {
      const b0 = b + <usize>c * stride, b1 = b0 + stride;
      let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s10 = f32x4.splat(0), s11 = f32x4.splat(0);
      let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s30 = f32x4.splat(0), s31 = f32x4.splat(0);
      for (let k = 0; k < simdEnd; k += 4) {
        const at = <usize>k << 2;
        const x0 = v128.load(b0 + at), x1 = v128.load(b1 + at);
        let y = v128.load(a0 + at);
        s00 = f32x4.add(s00, f32x4.mul(y, x0)); s01 = f32x4.add(s01, f32x4.mul(y, x1));
        y = v128.load(a1 + at);
        s10 = f32x4.add(s10, f32x4.mul(y, x0)); s11 = f32x4.add(s11, f32x4.mul(y, x1));
        y = v128.load(a2 + at);
        s20 = f32x4.add(s20, f32x4.mul(y, x0)); s21 = f32x4.add(s21, f32x4.mul(y, x1));
        y = v128.load(a3 + at);
        s30 = f32x4.add(s30, f32x4.mul(y, x0)); s31 = f32x4.add(s31, f32x4.mul(y, x1));
      }
      const at = <usize>c << 2;
      store<f32>(o + at, hsum(s00) + tailDot(a0, b0, simdEnd, inner));
      store<f32>(o + at + 4, hsum(s01) + tailDot(a0, b1, simdEnd, inner));
      store<f32>(o + oStride + at, hsum(s10) + tailDot(a1, b0, simdEnd, inner));
      store<f32>(o + oStride + at + 4, hsum(s11) + tailDot(a1, b1, simdEnd, inner));
      store<f32>(o + 2 * oStride + at, hsum(s20) + tailDot(a2, b0, simdEnd, inner));
      store<f32>(o + 2 * oStride + at + 4, hsum(s21) + tailDot(a2, b1, simdEnd, inner));
      store<f32>(o + 3 * oStride + at, hsum(s30) + tailDot(a3, b0, simdEnd, inner));
      store<f32>(o + 3 * oStride + at + 4, hsum(s31) + tailDot(a3, b1, simdEnd, inner));
    }
    for (; c < cols; c++) {
      const bc = b + <usize>c * stride;
      for (let i = 0; i < 4; i++) store<f32>(o + <usize>i * oStride + (<usize>c << 2), rowDot(a0 + <usize>i * stride, bc, inner));
    }
  }
  for (; r < rows; r++) {
    for (let c = 0; c < cols; c++) store<f32>(out + (<usize>(r * cols + c) << 2), rowDot(a + <usize>r * stride, b + <usize>c * stride, inner));
  }
}

// out (p, q) = a (n, p)^T @ b (n, q): the weight gradient dy^T x of such a layer, in its (out, in)
// layout. The n rows go in chunks whose slices of a and b stay in cache while every output
// block takes its share.
export function matmulTN(a: usize, b: usize, out: usize, n: i32, p: i32, q: i32): void {
  const chunk = 128;
  const aStride = <usize>p << 2;
  const bStride = <usize>q << 2;
  memory.fill(out, 0, <usize>(p * q) << 2);
  for (let n0 = 0; n0 < n; n0 += chunk) {
    const n1 = min(n, n0 + chunk);
    let i = 0;
    for (; i + 4 <= p; i += 4) {
      const o0 = out + <usize>i * bStride, o1 = o0 + bStride, o2 = o1 + bStride, o3 = o2 + bStride;
      let j = 0;
      for (; j + 8 <= q; j += 8) {
        const at = <usize>j << 2;
        let s00 = v128.load(o0 + at), s01 = v128.load(o0 + at + 16), s10 = v128.load(o1 + at), s11 = v128.load(o1 + at + 16);
        let s20 = v128.load(o2 + at), s21 = v128.load(o2 + at + 16), s30 = v128.load(o3 + at), s31 = v128.load(o3 + at + 16);
        let ar = a + <usize>n0 * aStride + (<usize>i << 2);
        let br = b + <usize>n0 * bStride + at;
        for (let m = n0; m < n1; m++) {
          const x0 = v128.load(br), x1 = v128.load(br + 16);
          let y = f32x4.splat(load<f32>(ar));
          s00 = f32x4.add(s00, f32x4.mul(y, x0)); s01 = f32x4.add(s01, f32x4.mul(y, x1));
          y = f32x4.splat(load<f32>(ar + 4));
          s10 = f32x4.add(s10, f32x4.mul(y, x0)); s11 = f32x4.add(s11, f32x4.mul(y, x1));
          y = f32x4.splat(load<f32>(ar + 8));
          s20 = f32x4.add(s20, f32x4.mul(y, x0)); s21 = f32x4.add(s21, f32x4.mul(y, x1));
          y = f32x4.splat(load<f32>(ar + 12));
          s30 = f32x4.add(s30, f32x4.mul(y, x0)); s31 = f32x4.add(s31, f32x4.mul(y, x1));
          ar += aStride;
          br += bStride;
        }
        v128.store(o0 + at, s00); v128.store(o0 + at + 16, s01); v128.store(o1 + at, s10); v128.store(o1 + at + 16, s11);
        v128.store(o2 + at, s20); v128.store(o2 + at + 16, s21); v128.store(o3 + at, s30); v128.store(o3 + at + 16, s31);
      }
      for (; j < q; j++) {
        for (let r = 0; r < 4; r++) {
          let total = load<f32>(out + (<usize>((i + r) * q + j) << 2));
          for (let m = n0; m < n1; m++) total += load<f32>(a + <usize>m * aStride + (<usize>(i + r) << 2)) * load<f32>(b + <usize>m * bStride + (<usize>j << 2));
          store<f32>(out + (<usize>((i + r) * q + j) << 2), total);
        }
      }
    }
    for (; i < p; i++) {
      for (let j = 0; j < q; j++) {
        let total = load<f32>(out + (<usize>(i * q + j) << 2));
        for (let m = n0; m < n1; m++) total += load<f32>(a + <usize>m * aStride + (<usize>i << 2)) * load<f32>(b + <usize>m * bStride + (<usize>j << 2));
        store<f32>(out + (<usize>(i * q + j) << 2), total);
      }
    }
  }
}
