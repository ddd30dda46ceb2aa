/**
 * Named points where a test can have this process killed, so that "a kill during a delete" is
 * tested at the moment it matters rather than by timing luck: `PIPELINE_FAULT=<point>` sends this
 * process SIGKILL when it reaches `<point>`. Unset (always, outside tests) it does nothing.
 *
 * Points: trash:moved, trash:half-removed (trash.ts); publish:manifest-written,
 * publish:old-trashed (store.ts); run-record:final (commands/run.ts).
 */
export function faultPoint(point: string): void {
  if (process.env.PIPELINE_FAULT === point) process.kill(process.pid, 'SIGKILL');
}
