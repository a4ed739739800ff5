/**
 * The views' DOM helpers: plain elements, every text through textContent (no
 * HTML from the server).
 */
import { sparklinePoints } from '../format';

type Attrs = Record<string, string | boolean | number | ((e: Event) => void)>;
export type Child = Node | string | null | undefined | false;

/** el('div', {class: 'x'}, 'text', child) */
export function el(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') {
      e.addEventListener(k.replace(/^on/, ''), v);
    } else if (v === true) {
      e.setAttribute(k, '');
    } else if (v !== false) {
      e.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined && c !== false) {
      e.append(c);
    }
  }
  return e;
}

const SVGNS = 'http://www.w3.org/2000/svg';

export function sparkline(values: number[], max: number | undefined, cls: string, title: string): Element {
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('class', `gpuhub-spark ${cls}`);
  svg.setAttribute('viewBox', '0 0 200 32');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const line = document.createElementNS(SVGNS, 'polyline');
  line.setAttribute('points', sparklinePoints(values, 200, 30, max));
  svg.append(line);
  return svg;
}

export function bar(fraction: number | null, cls = ''): HTMLElement {
  const f = fraction === null ? 0 : Math.max(0, Math.min(1, fraction));
  const warn = f >= 0.9 ? ' gpuhub-bar-warn' : '';
  return el(
    'div',
    { class: `gpuhub-bar ${cls}${warn}` },
    el('div', { class: 'gpuhub-bar-fill', style: `width: ${(f * 100).toFixed(1)}%` })
  );
}

export function row(label: string, ...value: Child[]): HTMLElement {
  // a text value is also its title: whole where a narrow panel cuts it
  const attrs: Attrs = { class: 'gpuhub-value' };
  if (value.every(v => typeof v === 'string')) {
    attrs.title = value.join('');
  }
  return el('div', { class: 'gpuhub-row' }, el('span', { class: 'gpuhub-label' }, label), el('span', attrs, ...value));
}

export function errorLine(message: string): HTMLElement {
  return el('div', { class: 'gpuhub-error', role: 'alert' }, message);
}

export function muted(text: string): HTMLElement {
  return el('div', { class: 'gpuhub-muted' }, text);
}
