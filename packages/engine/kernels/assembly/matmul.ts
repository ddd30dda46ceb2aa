// ------------------------------------------------------------------ the three products of an HF linear layer
// tfjs-wasm multiplies plain 2-D operands (XNNPACK) but transposes by copying, and repacks its
// right operand on every call when that operand is a new tensor (a weight's transpose, an
// activation gradient). These read the operands in place: x W^T (forward), dy W (input gradient),
// dy^T x (weight gradient).
//
// Each is a sum of outer products over a right operand packed into panels of 8 columns, stored
// k-major (panel[k][c] = right[k][8P + c], the last panel zero-padded), so a 4 x 8 block of out
// stays in eight registers while k runs, each k loading two vectors of the panel and
// broadcasting four values of a (v128.load32_splat: one broadcast load, where a splat of a loaded
// scalar is a load and a shuffle on the port x64's vector adds also use). Dot products per output
// (the earlier x W^T) paid a horizontal sum per output, a tenth of the work when inner is 128.
// Packing costs inner x cols copies against rows x inner x cols products. The first two share
// productOfPanels (so does attention.ts); dy^T x, whose left operand is read transposed, has its
// own loop over chunks of rows.

// out (rows, cols) = a (rows, inner) @ b (cols, inner)^T: a linear layer's forward x W^T with W
// kept (out, in), as HF stores it. packed: scratch of inner * ceil(cols / 8) * 8 floats.
export function matmulNT(a: usize, b: usize, out: usize, rows: i32, inner: i32, cols: i32, packed: usize): void {
  packTransposed(b, <usize>inner << 2, packed, cols, inner);
  productOfPanels(a, <usize>inner << 2, packed, <usize>inner << 5, out, <usize>cols << 2, rows, inner, cols);
}

// out (rows, cols) = a (rows, inner) @ b (inner, cols): a linear layer's input gradient dy W, W
// (out, in). packed: scratch of inner * ceil(cols / 8) * 8 floats.
export function matmulNN(a: usize, b: usize, out: usize, rows: i32, inner: i32, cols: i32, packed: usize): void {
  pack(b, <usize>cols << 2, packed, inner, cols);
  productOfPanels(a, <usize>inner << 2, packed, <usize>inner << 5, out, <usize>cols << 2, rows, inner, cols);
}

// Panels of the right operand b^T for b (cols, inner) with rows `stride` bytes apart:
// panel[k][c] = b[8P + c][k], panels inner * 8 floats apart, the last zero-padded.
export function packTransposed(b: usize, stride: usize, packed: usize, cols: i32, inner: i32): void {
  const panelBytes = <usize>inner << 5;
  for (let c0 = 0; c0 < cols; c0 += 8) {
    const target = packed + <usize>(c0 >> 3) * panelBytes;
    for (let c = 0; c < 8; c++) {
      if (c0 + c < cols) {
        const row = b + <usize>(c0 + c) * stride;
        for (let k = 0; k < inner; k++) store<f32>(target + (<usize>k << 5) + (<usize>c << 2), load<f32>(row + (<usize>k << 2)));
      } else {
        for (let k = 0; k < inner; k++) store<f32>(target + (<usize>k << 5) + (<usize>c << 2), 0);
      }
    }
  }
}

// Panels of the right operand b (inner, cols) with rows `stride` bytes apart:
// panel[k][c] = b[k][8P + c], panels inner * 8 floats apart, the last zero-padded.
export function pack(b: usize, stride: usize, packed: usize, inner: i32, cols: i32): void {
  const panelBytes = <usize>inner << 5;
  for (let c0 = 0; c0 < cols; c0 += 8) {
    const target = packed + <usize>(c0 >> 3) * panelBytes;
    const width = min(8, cols - c0);
    for (let k = 0; k < inner; k++) {
      const from = b + <usize>k * stride + (<usize>c0 << 2);
      const to = target + (<usize>k << 5);
      if (width == 8) {
        v128.store(to, v128.load(from));
        v128.store(to, v128.load(from, 16), 16);
      } else {
        for (let c = 0; c < 8; c++) store<f32>(to + (<usize>c << 2), c < width ? load<f32>(from + (<usize>c << 2)) : 0);
      }
    }
  }
}

// out (rows, cols) = a (rows, inner) @ the packed right operand, whose panels start panelBytes
// apart (a panel's first `inner` rows are used); a's and out's rows are `stride` and `oStride`
// bytes apart. Rows go in tiles of about 16 KB of a, so a tile stays in L1 while every panel
// (inner x 8 floats) passes it.
export function productOfPanels(a: usize, stride: usize, packed: usize, panelBytes: usize, out: usize, oStride: usize, rows: i32, inner: i32, cols: i32): void {
  const tileRows = max(4, (4096 / inner) & ~3);
  for (let tile = 0; tile < rows; tile += tileRows) {
    const tileEnd = min(rows, tile + tileRows);
    for (let c0 = 0; c0 < cols; c0 += 8) {
      const pb = packed + <usize>(c0 >> 3) * panelBytes;
      const width = min(8, cols - c0);
      let r = tile;
      for (; r + 4 <= tileEnd; r += 4) {
        const a0 = a + <usize>r * stride, a1 = a0 + stride, a2 = a1 + stride, a3 = a2 + stride;
        let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s10 = f32x4.splat(0), s11 = f32x4.splat(0);
        let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s30 = f32x4.splat(0), s31 = f32x4.splat(0);
        let bk = pb;
        for (let k = 0; k < inner; k++) {
          const at = <usize>k << 2;
          const x0 = v128.load(bk), x1 = v128.load(bk, 16);
          let y = v128.load32_splat(a0 + at);
          s00 = f32x4.add(s00, f32x4.mul(y, x0)); s01 = f32x4.add(s01, f32x4.mul(y, x1));
          y = v128.load32_splat(a1 + at);
          s10 = f32x4.add(s10, f32x4.mul(y, x0)); s11 = f32x4.add(s11, f32x4.mul(y, x1));
          y = v128.load32_splat(a2 + at);
          s20 = f32x4.add(s20, f32x4.mul(y, x0)); s21 = f32x4.add(s21, f32x4.mul(y, x1));
          y = v128.load32_splat(a3 + at);
          s30 = f32x4.add(s30, f32x4.mul(y, x0)); s31 = f32x4.add(s31, f32x4.mul(y, x1));
          bk += 32;
        }
        const o = out + <usize>r * oStride + (<usize>c0 << 2);
        storeRow8(o, s00, s01, width);
        storeRow8(o + oStride, s10, s11, width);
        storeRow8(o + 2 * oStride, s20, s21, width);
        storeRow8(o + 3 * oStride, s30, s31, width);
      }
      for (; r < tileEnd; r++) {
        const ar = a + <usize>r * stride;
        let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
        let bk = pb;
        for (let k = 0; k < inner; k++) {
          const y = v128.load32_splat(ar + (<usize>k << 2));
          s0 = f32x4.add(s0, f32x4.mul(y, v128.load(bk)));
          s1 = f32x4.add(s1, f32x4.mul(y, v128.load(bk, 16)));
          bk += 32;
        }
        storeRow8(out + <usize>r * oStride + (<usize>c0 << 2), s0, s1, width);
      }
    }
  }
}

// The first `width` (1..8) of the eight floats lo | hi at o.
@inline function storeRow8(o: usize, lo: v128, hi: v128, width: i32): void {
  if (width == 8) {
    v128.store(o, lo);
    v128.store(o, hi, 16);
    return;
  }
  const half = width >= 4 ? hi : lo;
  if (width >= 4) v128.store(o, lo);
  const rest = o + (<usize>(width & 4) << 2);
  const count = width & 3;
  if (count > 0) store<f32>(rest, f32x4.extract_lane(half, 0));
  if (count > 1) store<f32>(rest, f32x4.extract_lane(half, 1), 4);
  if (count > 2) store<f32>(rest, f32x4.extract_lane(half, 2), 8);
}

// Rows of b per packed chunk of matmulTN (fused.ts sizes its scratch by it). Measured on the tiny
// preset's five weight-gradient shapes (CPU time, interleaved against the unpacked kernel): 64
// gave 1.01-1.37x, 128 0.86-1.28x (worst where q is 352 and p 128), 32 1.09-1.33x.
export const TN_CHUNK: i32 = 64;

// out (p, q) = a (n, p)^T @ b (n, q): the weight gradient dy^T x of such a layer, in its (out, in)
// layout. The n rows go in chunks of TN_CHUNK; each chunk of b is packed into panels of 8 columns
// (row-major within a panel), and a panel stays in L1 while every 4 x 8 block of out in its
// columns takes the chunk's share (reading the panel sequentially, where b itself gave one
// cache line per row). Outputs outside whole blocks are plain sums. packed: scratch of
// TN_CHUNK * (q & ~7) floats.
export function matmulTN(a: usize, b: usize, out: usize, n: i32, p: i32, q: i32, packed: usize): void {
  const chunk = TN_CHUNK;
  const aStride = <usize>p << 2;
  const bStride = <usize>q << 2;
  const blockRows = p & ~3;
  const blockCols = q & ~7;
  memory.fill(out, 0, <usize>(p * q) << 2);
  for (let n0 = 0; n0 < n; n0 += chunk) {
    const n1 = min(n, n0 + chunk);
    const panelBytes = <usize>(n1 - n0) << 5;
    for (let m = n0; m < n1; m++) {
      const from = b + <usize>m * bStride;
      const to = packed + (<usize>(m - n0) << 5);
      for (let j = 0; j < blockCols; j += 8) {
        const panel = to + <usize>(j >> 3) * panelBytes;
        v128.store(panel, v128.load(from + (<usize>j << 2)));
        v128.store(panel, v128.load(from + (<usize>j << 2), 16), 16);
      }
    }
    for (let j = 0; j < blockCols; j += 8) {
      const panel = packed + <usize>(j >> 3) * panelBytes;
      const at = <usize>j << 2;
      for (let i = 0; i < blockRows; i += 4) {
        const o0 = out + <usize>i * bStride, o1 = o0 + bStride, o2 = o1 + bStride, o3 = o2 + bStride;
        let s00 = v128.load(o0 + at), s01 = v128.load(o0 + at + 16), s10 = v128.load(o1 + at), s11 = v128.load(o1 + at + 16);
        let s20 = v128.load(o2 + at), s21 = v128.load(o2 + at + 16), s30 = v128.load(o3 + at), s31 = v128.load(o3 + at + 16);
        let ar = a + <usize>n0 * aStride + (<usize>i << 2);
        let br = panel;
        for (let m = n0; m < n1; m++) {
          const x0 = v128.load(br), x1 = v128.load(br, 16);
          let y = v128.load32_splat(ar);
          s00 = f32x4.add(s00, f32x4.mul(y, x0)); s01 = f32x4.add(s01, f32x4.mul(y, x1));
          y = v128.load32_splat(ar, 4);
          s10 = f32x4.add(s10, f32x4.mul(y, x0)); s11 = f32x4.add(s11, f32x4.mul(y, x1));
          y = v128.load32_splat(ar, 8);
          s20 = f32x4.add(s20, f32x4.mul(y, x0)); s21 = f32x4.add(s21, f32x4.mul(y, x1));
          y = v128.load32_splat(ar, 12);
          s30 = f32x4.add(s30, f32x4.mul(y, x0)); s31 = f32x4.add(s31, f32x4.mul(y, x1));
          ar += aStride;
          br += 32;
        }
        v128.store(o0 + at, s00); v128.store(o0 + at + 16, s01); v128.store(o1 + at, s10); v128.store(o1 + at + 16, s11);
        v128.store(o2 + at, s20); v128.store(o2 + at + 16, s21); v128.store(o3 + at, s30); v128.store(o3 + at + 16, s31);
      }
    }
    for (let i = 0; i < p; i++) {
      for (let j = i < blockRows ? blockCols : 0; j < q; j++) {
        let total = load<f32>(out + (<usize>(i * q + j) << 2));
        for (let m = n0; m < n1; m++) total += load<f32>(a + <usize>m * aStride + (<usize>i << 2)) * load<f32>(b + <usize>m * bStride + (<usize>j << 2));
        store<f32>(out + (<usize>(i * q + j) << 2), total);
      }
    }
  }
}
