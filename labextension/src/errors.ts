/**
 * The one error shape of gpuhub's APIs (the services and the panel's server
 * extension): `{"error": "…"}` with a 4xx/5xx status. Pure, for the tests.
 */
export function errorMessage(status: number, statusText: string, body: unknown): string {
  const error = body && typeof body === 'object' ? (body as { error?: unknown }).error : undefined;
  const text = typeof error === 'string' && error ? error : statusText || 'no answer';
  return `${status}: ${text}`;
}
