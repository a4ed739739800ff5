/**
 * The panel's settings (schema/plugin.json) as the panel uses them: pure, so
 * that a hand-edited or partial setting still gives a working panel.
 */

/** The panel's sections, in the order they show. */
export const SECTIONS = ['share', 'live', 'quotas', 'queue', 'jobs', 'vfolders', 'storage'] as const;
export type SectionKey = (typeof SECTIONS)[number];

export interface IPanelSettings {
  /** ms between two polls while the panel is shown */
  intervalMs: number;
  /** which sections show */
  sections: Record<SectionKey, boolean>;
}

export const DEFAULT_INTERVAL_S = 5;
export const MIN_INTERVAL_S = 1;
export const MAX_INTERVAL_S = 3600;

/** The composite settings (`settings.composite`) → what the panel does; missing or wrong values get their defaults. */
export function panelSettings(composite: Record<string, unknown> | null | undefined): IPanelSettings {
  const raw = composite ?? {};
  const s = Number(raw.refreshInterval);
  const seconds = isFinite(s) && s > 0 ? Math.min(MAX_INTERVAL_S, Math.max(MIN_INTERVAL_S, s)) : DEFAULT_INTERVAL_S;
  const shown = (raw.sections ?? {}) as Record<string, unknown>;
  const sections = {} as Record<SectionKey, boolean>;
  for (const key of SECTIONS) {
    sections[key] = shown[key] !== false;
  }
  return { intervalMs: seconds * 1000, sections };
}
