// Attention kernels (see index.ts for conventions): causal self-attention over the q|k|v
// projection output, its gradient, and one decoding step on frozen weights.
import { pack, packTransposed, productOfPanels } from './matmul';
import { addScaledToRows, dotRows, expMasked, maskedMax, rowDot, scaleInPlace, weightedRowSum } from './vector';

// ------------------------------------------------------------------ causal self-attention (Vaswani et al. 2017, eq. 1;
// grouped-query heads, Ainslie et al. 2023: query head h uses kv head h / (H / Hkv), as HF repeat_kv)
// qkv (B*T, (H + 2 Hkv) hd): each row holds H query heads, Hkv key heads, Hkv value heads, RoPE
// already applied to q and k. Query i of batch row b sees key j iff j <= i and mask[b, j] is 1
// (mask (B, T), floats 1 or 0). out (B*T, H hd) = softmax(scale q k^T) v over the keys seen, in the
// layout o_proj takes (no transposes); lse (B, H, T) gets each query's log-sum-exp of scores, from
// which the backward pass recomputes the probabilities instead of storing them (FlashAttention,
// Dao et al. 2022, sec. 3.1). A query that sees no key (left padding) gets zeros and lse 0.
// Queries go in blocks of QUERY_BLOCK: the block's scores against the keys it can see are one
// product with the kv head's keys packed as panels (matmul.ts), then the probabilities times the
// packed values another, so both run in the linear layers' micro-kernel instead of a dot product
// per (query, key). scratch: attentionScratch(T, hd) floats.
const QUERY_BLOCK = 16;

// Scratch floats `attention` needs: a block's scores, the keys and the values packed.
export function attentionScratch(steps: i32, headDim: i32): i32 {
  return QUERY_BLOCK * steps + ((steps + 7) & ~7) * headDim + ((headDim + 7) & ~7) * steps;
}

export function attention(qkv: usize, mask: usize, out: usize, lse: usize, scratch: usize, batch: i32, steps: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32): void {
  const width = (heads + 2 * kvHeads) * headDim;
  const rowBytes = <usize>width << 2;
  const group = heads / kvHeads;
  const hdBytes = <usize>headDim << 2;
  const scores = scratch;
  const scoreStride = <usize>steps << 2;
  const packedKeys = scores + <usize>QUERY_BLOCK * scoreStride;
  const packedValues = packedKeys + (<usize>(((steps + 7) & ~7) * headDim) << 2);
  for (let b = 0; b < batch; b++) {
    const maskRow = mask + (<usize>(b * steps) << 2);
    const rows = qkv + <usize>(b * steps) * rowBytes;
    for (let h = 0; h < heads; h++) {
      const kOffset = <usize>((heads + h / group) * headDim) << 2;
      const vOffset = kOffset + (<usize>(kvHeads * headDim) << 2);
      if (h % group == 0) {
        packTransposed(rows + kOffset, rowBytes, packedKeys, steps, headDim);
        pack(rows + vOffset, rowBytes, packedValues, steps, headDim);
      }
      for (let i0 = 0; i0 < steps; i0 += QUERY_BLOCK) {
        const i1 = min(steps, i0 + QUERY_BLOCK);
        // Scores of queries i0..i1-1 against keys 0..i1-1 (later keys are unseen by all of them).
        productOfPanels(rows + <usize>i0 * rowBytes + (<usize>(h * headDim) << 2), rowBytes, packedKeys, <usize>headDim << 5, scores, scoreStride, i1 - i0, headDim, i1);
        for (let i = i0; i < i1; i++) {
          const row = scores + <usize>(i - i0) * scoreStride;
          const lseAt = lse + (<usize>((b * heads + h) * steps + i) << 2);
          const visible = i + 1;
          // Keys past the query weigh 0 in the product with the values.
          memory.fill(row + (<usize>visible << 2), 0, <usize>(i1 - visible) << 2);
          scaleInPlace(row, visible, scale);
          const max = maskedMax(row, maskRow, visible);
          if (max == -Infinity) {
            memory.fill(row, 0, <usize>visible << 2);
            store<f32>(lseAt, 0);
            continue;
          }
          const total = expMasked(row, maskRow, visible, max);
          store<f32>(lseAt, max + Mathf.log(total));
          scaleInPlace(row, visible, f32(1) / total);
        }
        productOfPanels(scores, scoreStride, packedValues, <usize>steps << 5, out + <usize>((b * steps + i0) * heads + h) * hdBytes, <usize>(heads * headDim) << 2, i1 - i0, i1, headDim);
      }
    }
  }
}

// Gradient of `attention` (FlashAttention-2, Dao 2023, Algorithm 2, untiled): with
// p_ij = exp(scale q_i.k_j - lse_i) (the forward's probabilities) and D_i = dO_i . O_i,
// ds_ij = p_ij (dO_i . v_j - D_i); dq_i = scale sum_j ds_ij k_j; dk_j = scale sum_i ds_ij q_i;
// dv_j = sum_i p_ij dO_i. dqkv has qkv's layout; keys and values accumulate over queries and the
// heads of their group, so it is zeroed first. Queries go in blocks as in `attention`: a block's
// scores, its dO . v products and its dq are products in the linear layers' micro-kernel (keys
// and values packed once per kv head); dk_j, dv_j take each query's rank-one update with q_i and
// dO_i held in registers. scratch: attentionGradScratch(T, hd) floats.
export function attentionGradScratch(steps: i32, headDim: i32): i32 {
  return 2 * QUERY_BLOCK * steps + 2 * ((steps + 7) & ~7) * headDim + ((headDim + 7) & ~7) * steps;
}

export function attentionGrad(dout: usize, qkv: usize, mask: usize, out: usize, lse: usize, dqkv: usize, scratch: usize, batch: i32, steps: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32): void {
  const width = (heads + 2 * kvHeads) * headDim;
  const rowBytes = <usize>width << 2;
  const outBytes = <usize>(heads * headDim) << 2;
  const group = heads / kvHeads;
  const hdBytes = <usize>headDim << 2;
  memory.fill(dqkv, 0, <usize>(batch * steps * width) << 2);
  // A block's scores then probabilities, its dO . v products then ds, and the packed operands.
  const blockStride = <usize>steps << 2;
  const probs = scratch;
  const dots = probs + <usize>QUERY_BLOCK * blockStride;
  const packedKeysT = dots + <usize>QUERY_BLOCK * blockStride;
  const packedValuesT = packedKeysT + (<usize>(((steps + 7) & ~7) * headDim) << 2);
  const packedKeys = packedValuesT + (<usize>(((steps + 7) & ~7) * headDim) << 2);
  for (let b = 0; b < batch; b++) {
    const maskRow = mask + (<usize>(b * steps) << 2);
    const rowStart = qkv + <usize>(b * steps) * rowBytes;
    const gradStart = dqkv + <usize>(b * steps) * rowBytes;
    for (let h = 0; h < heads; h++) {
      const kOffset = <usize>((heads + h / group) * headDim) << 2;
      const vOffset = kOffset + (<usize>(kvHeads * headDim) << 2);
      const qOffset = <usize>h * hdBytes;
      if (h % group == 0) {
        packTransposed(rowStart + kOffset, rowBytes, packedKeysT, steps, headDim);
        packTransposed(rowStart + vOffset, rowBytes, packedValuesT, steps, headDim);
        pack(rowStart + kOffset, rowBytes, packedKeys, steps, headDim);
      }
      for (let i0 = 0; i0 < steps; i0 += QUERY_BLOCK) {
        const i1 = min(steps, i0 + QUERY_BLOCK);
        const dOBlock = dout + <usize>((b * steps + i0) * heads + h) * hdBytes;
        productOfPanels(rowStart + <usize>i0 * rowBytes + qOffset, rowBytes, packedKeysT, <usize>headDim << 5, probs, blockStride, i1 - i0, headDim, i1);
        productOfPanels(dOBlock, outBytes, packedValuesT, <usize>headDim << 5, dots, blockStride, i1 - i0, headDim, i1);
        for (let i = i0; i < i1; i++) {
          const p = probs + <usize>(i - i0) * blockStride;
          const ds = dots + <usize>(i - i0) * blockStride;
          const q = rowStart + <usize>i * rowBytes + qOffset;
          const headAt = <usize>((b * steps + i) * heads + h) * hdBytes;
          const dO = dout + headAt;
          const visible = i + 1;
          scaleInPlace(p, visible, scale);
          expMasked(p, maskRow, visible, load<f32>(lse + (<usize>((b * heads + h) * steps + i) << 2)));
          dsFromProbs(ds, p, visible, rowDot(dO, out + headAt, headDim), scale);
          // Keys past the query take no gradient from it (dq's product runs over the block's keys).
          memory.fill(ds + (<usize>visible << 2), 0, <usize>(i1 - visible) << 2);
          addScaledToRows(gradStart + kOffset, rowBytes, ds, q, visible, headDim);
          addScaledToRows(gradStart + vOffset, rowBytes, p, dO, visible, headDim);
        }
        productOfPanels(dots, blockStride, packedKeys, <usize>steps << 5, gradStart + <usize>i0 * rowBytes + qOffset, rowBytes, i1 - i0, i1, headDim);
      }
    }
  }
}

// ds_j = p_j (dots_j - d) scale in place of dots_j, j < n.
@inline function dsFromProbs(dots: usize, probs: usize, n: i32, d: f32, scale: f32): void {
  const vd = f32x4.splat(d), vscale = f32x4.splat(scale);
  const simdEnd = n & ~3;
  for (let j = 0; j < simdEnd; j += 4) {
    const at = <usize>j << 2;
    v128.store(dots + at, f32x4.mul(f32x4.mul(v128.load(probs + at), f32x4.sub(v128.load(dots + at), vd)), vscale));
  }
  for (let j = simdEnd; j < n; j++) {
    const at = <usize>j << 2;
    store<f32>(dots + at, load<f32>(probs + at) * (load<f32>(dots + at) - d) * scale);
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
      dotRows(scores, roped, k, hdBytes, keyCount, headDim, 1);
      const max = maskedMax(scores, maskRow, keyCount);
      const o = out + <usize>(b * heads + h) * hdBytes;
      if (max == -Infinity) {
        memory.fill(o, 0, hdBytes);
        continue;
      }
      const inverse = f32(1) / expMasked(scores, maskRow, keyCount, max);
      weightedRowSum(o, scores, v, hdBytes, keyCount, headDim, inverse);
    }
  }
}
