/**
 * Masks a secret (an API key) in text that may be logged or stored, in the forms an echo of it
 * takes: as written, URL-encoded, in base64 or base64url (alone or inside a longer encoded string,
 * as in an HTTP Basic header) and in hex, and in pieces: any run of at least `MIN_PIECE` characters
 * that also occurs in one of those forms is masked, so a key split in two ("sk-abc…" + "…xyz")
 * or cut short is masked piece by piece. A piece shorter than that is let through: too short to
 * recover a key from, and masking it would also hit ordinary text.
 */
const MIN_PIECE = 8;
const MASK = '***';

/** The characters of base64(prefix + secret) that depend only on the secret's bytes, for each of the 3 alignments. */
function base64Cores(secret: Buffer, encoding: 'base64' | 'base64url'): string[] {
  return [0, 1, 2].map((offset) => {
    const encoded = Buffer.concat([Buffer.alloc(offset), secret]).toString(encoding);
    // Character i holds bits [6i, 6i + 6); the secret's bits are [8 * offset, 8 * (offset + length)).
    return encoded.slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + secret.length)) / 6));
  });
}

export function secretScrubber(secret: string | undefined): (text: string) => string {
  if (!secret) return (text) => text;
  const bytes = Buffer.from(secret, 'utf8');
  const forms = [secret, encodeURIComponent(secret), ...base64Cores(bytes, 'base64'), ...base64Cores(bytes, 'base64url'), bytes.toString('hex'), bytes.toString('hex').toUpperCase()];
  const piece = Math.min(MIN_PIECE, secret.length);
  const pieces = new Set<string>();
  for (const form of forms) for (let i = 0; i + piece <= form.length; i++) pieces.add(form.slice(i, i + piece));
  return (text) => {
    // One pass of a window of `piece` characters; overlapping and adjacent hits merge into one mask.
    const masked = new Uint8Array(text.length);
    let any = false;
    for (let i = 0; i + piece <= text.length; i++) {
      if (!pieces.has(text.slice(i, i + piece))) continue;
      masked.fill(1, i, i + piece);
      any = true;
    }
    if (!any) return text;
    let out = '';
    for (let i = 0; i < text.length; i++) {
      if (!masked[i]) out += text[i];
      else if (i === 0 || !masked[i - 1]) out += MASK;
    }
    return out;
  };
}
