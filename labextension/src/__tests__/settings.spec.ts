import { errorMessage } from '../errors';
import { panelSettings, SECTIONS } from '../settings';

describe('settings', () => {
  it('defaults: every 5 s, every section', () => {
    const s = panelSettings({});
    expect(s.intervalMs).toBe(5000);
    expect(SECTIONS.map(k => s.sections[k])).toEqual([true, true, true, true, true, true, true]);
    expect(panelSettings(null).intervalMs).toBe(5000);
  });

  it('reads the interval in seconds, bounded, and the sections switched off', () => {
    const s = panelSettings({ refreshInterval: 30, sections: { queue: false, storage: false } });
    expect(s.intervalMs).toBe(30000);
    expect(s.sections).toEqual({
      share: true,
      live: true,
      quotas: true,
      queue: false,
      jobs: true,
      vfolders: true,
      storage: false
    });
    expect(panelSettings({ refreshInterval: 0.2 }).intervalMs).toBe(1000);
    expect(panelSettings({ refreshInterval: 1e9 }).intervalMs).toBe(3600 * 1000);
    expect(panelSettings({ refreshInterval: 'soon' }).intervalMs).toBe(5000);
  });
});

describe('the error shape', () => {
  it('reads {"error": "…"}, as the services and the server extension answer', () => {
    expect(errorMessage(409, 'Conflict', { error: 'allocator: extending would delay 2 queued request(s)' })).toBe(
      '409: allocator: extending would delay 2 queued request(s)'
    );
    // not our shape (a proxy's HTML page, jupyter_server's own): the status text
    expect(errorMessage(502, 'Bad Gateway', '<html>…</html>')).toBe('502: Bad Gateway');
    expect(errorMessage(404, 'Not Found', { message: 'nope' })).toBe('404: Not Found');
  });
});
