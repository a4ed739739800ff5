/** Calls to the server extension under {base_url}gpuhub/. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { errorMessage } from './errors';
import { IMetrics } from './status';

export async function requestAPI<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'gpuhub', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new Error(`the server did not answer (${(error as Error).message})`);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    throw new Error(errorMessage(response.status, response.statusText, data));
  }
  return data as T;
}


export async function sessionMetrics(): Promise<IMetrics | null> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'api/metrics/v1');
  try {
    const r = await ServerConnection.makeRequest(url, {}, settings);
    return r.ok ? ((await r.json()) as IMetrics) : null;
  } catch {
    return null;
  }
}

/** The value of a cookie (the _xsrf token for uploads). */
export function cookie(name: string): string | undefined {
  const m = document.cookie.match('\\b' + name + '=([^;]*)\\b');
  return m ? decodeURIComponent(m[1]) : undefined;
}
