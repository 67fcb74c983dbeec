// The snapshot frame's text, built around rows already serialised by the store (no re-parse).
import type { SnapshotRowText } from './store/event-store.ts';

/** `{"type":"snapshot","rows":[...],"throughSeq":S,"done":bool}`; the last page (digest given) adds throughDigest. */
export function snapshotFrame(rows: SnapshotRowText[], throughSeq: number, throughDigest: string | null): string {
  let body = '{"type":"snapshot","rows":[';
  for (let i = 0; i < rows.length; i++) body += (i ? ',' : '') + rows[i]!.json;
  body += `],"throughSeq":${throughSeq},"done":${throughDigest !== null}`;
  if (throughDigest !== null) body += `,"throughDigest":"${throughDigest}"`;
  return body + '}';
}
