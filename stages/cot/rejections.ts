/** Why a `cot` stage kept nothing, in one phrase a user can act on without opening the log. */

export interface Rejection {
  id: string;
  round: string;
  reason: string;
  completion?: string;
  /** The teacher's error when the request itself failed (reason `teacher_error`). */
  error?: string;
}

/**
 * The most common cause among `rejections` (every round's), with the teacher's error message when
 * the requests failed: "all 180 rejections: teacher_error (HTTP 500)", or "most common of 40
 * rejections: label (25), then format (15)". A failed request is told apart by its error, since
 * "HTTP 500" and "HTTP 401" need different fixes.
 */
export function dominantRejection(rejections: readonly Rejection[]): string {
  if (rejections.length === 0) return 'nothing was asked';
  const counts = new Map<string, number>();
  for (const rejection of rejections) {
    const cause = rejection.error === undefined ? rejection.reason : `${rejection.reason} (${rejection.error})`;
    counts.set(cause, (counts.get(cause) ?? 0) + 1);
  }
  // Most frequent first; ties in first-seen order (Map order, and sort is stable).
  const ranked = [...counts].sort((a, b) => b[1] - a[1]);
  const [top, count] = ranked[0] as [string, number];
  if (count === rejections.length) return `all ${count} rejections: ${top}`;
  const next = ranked[1] as [string, number];
  return `most common of ${rejections.length} rejections: ${top} (${count}), then ${next[0]} (${next[1]})`;
}
