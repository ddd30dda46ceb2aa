// ------------------------------------------------------------------ the two products of an HF linear layer that need a transpose
// tfjs-wasm multiplies plain 2-D operands fast (XNNPACK) but transposes by copying, and repacks
// its right operand on every call when that operand is a new tensor (a weight's transpose, an
// activation gradient). These two read the operands in place. Register blocking: 4 x 2 (NT) and
// 4 x 8 (TN) accumulators, so accumulators and loaded values fit x64's 16 SIMD registers.
import { hsum, rowDot, tailDot } from './vector';

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
