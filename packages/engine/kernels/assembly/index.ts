// Fused training kernels for the tfjs wasm backend, in AssemblyScript (compiled by
// packages/engine/kernels/build.ts, which explains its settings). The module imports tfjs-wasm's own
// memory, so every pointer below is a tensor's byte offset in that heap (`memoryOffset`), and
// outputs are written straight into tensors tfjs allocated. Each function replaces a chain of
// tfjs ops (each op a kernel call, an allocation and a pass over memory) with one pass.
// All float32; row-major; `n` counts elements, `rows` x `cols` is a 2-D view.

import { expv, exps, rowDot, sigmoidv } from './vector';
export { attention, attentionGrad, attentionGradScratch, attentionScratch, decodeAttention, ropeFolded } from './attention';
export { matmulNN, matmulNT, matmulTN, TN_CHUNK } from './matmul';

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

// sum = x + y (the residual stream), then y = rmsNorm(sum) as above: two ops of a decoding step in one.
export function addRmsNorm(x: usize, y: usize, weight: usize, sum: usize, out: usize, rstd: usize, rows: i32, cols: i32, eps: f32): void {
  const n = rows * cols;
  const simdEnd = n & ~3;
  for (let i = 0; i < simdEnd; i += 4) {
    const at = <usize>i << 2;
    v128.store(sum + at, f32x4.add(v128.load(x + at), v128.load(y + at)));
  }
  for (let i = simdEnd; i < n; i++) {
    const at = <usize>i << 2;
    store<f32>(sum + at, load<f32>(x + at) + load<f32>(y + at));
  }
  rmsNorm(sum, weight, out, rstd, rows, cols, eps);
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
