import { describe, expect, it } from 'vitest';
import { normalise, stem, tokenize } from '../../stages/lib/relevance/text.ts';
import { cacheKey } from '../../stages/lib/serving/cache.ts';

describe('word segmentation in any script', () => {
  it('keeps Latin words as they were: lower case, no accents or apostrophes, hyphens split, dots in numbers kept', () => {
    expect(tokenize("Men's Café T-Shirt, 1.7L (2-pack)")).toEqual(['mens', 'cafe', 't', 'shirt', '1.7l', '2', 'pack']);
    // A trademark sign decomposes to capitals ("TM"): a mark, not a word.
    expect(tokenize('Windows Mobile™ 5.0')).toEqual(['windows', 'mobile', '5.0']);
    expect(normalise('  Running   SHOES ')).toBe('running shoes');
    expect(stem('boots')).toBe('boot');
  });

  it('cuts Japanese and Chinese, which write no spaces, into dictionary words', () => {
    expect(tokenize('メンズ防水ハイキングブーツ')).toEqual(['メンズ', '防水', 'ハイキング', 'ブーツ']);
    expect(tokenize('防水登山鞋女款')).toEqual(['防水', '登山鞋', '女', '款']);
    // Full- and half-width forms fold (NFKC): ｶﾞｽ is ガス, ＡＢＣ is abc.
    expect(tokenize('ｶﾞｽ ＡＢＣ')).toEqual(['ガス', 'abc']);
    // Mixed scripts in one chunk.
    expect(tokenize('iPhone15用ケース')).toEqual(['iphone15', '用', 'ケース']);
    // Non-Latin words are never singularised.
    expect(stem('ブーツ')).toBe('ブーツ');
  });

  it('joins the lone kana the dictionary leaves of a katakana loanword it does not know', () => {
    // ICU alone: フェ / イ / シ / ャ / ル / セ / ラム.
    expect(tokenize('フェイシャルセラム')).toEqual(['フェイシャルセラム']);
    // ICU alone: ウ / ォ / ッ / シ / ャ / ブル / マスカラ: the dictionary's マスカラ stays a word.
    expect(tokenize('ウォッシャブルマスカラ')).toEqual(['ウォッシャブル', 'マスカラ']);
  });

  it('gives queries in other scripts keys of their own (split, query log, serving cache)', () => {
    expect(normalise('防水 ハイキングブーツ')).toBe('防水 ハイキング ブーツ');
    expect(normalise('防水ハイキングブーツ')).toBe(normalise('防水 ハイキング ブーツ'));
    expect(normalise('キッチンスポンジ')).not.toBe(normalise('防水ハイキングブーツ'));
    const item = { title: 'メンズ 防水 ハイキングブーツ', category: [], attributes: {} };
    expect(cacheKey('防水ハイキングブーツ', item)).not.toBe(cacheKey('キッチンスポンジ', item));
    expect(cacheKey('防水ハイキングブーツ', item)).toBe(cacheKey('防水 ハイキング ブーツ', item));
  });
});
