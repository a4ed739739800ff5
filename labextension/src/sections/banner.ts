/** The panel's banner: why the last poll or the last action failed (pure). */
export function bannerLines(pollError: string | null, actionError: string | null): string[] {
  const lines: string[] = [];
  if (actionError) {
    lines.push(actionError);
  }
  if (pollError) {
    lines.push(`gpuhub: ${pollError}`);
  }
  return lines;
}
