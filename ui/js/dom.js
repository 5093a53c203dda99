// A tiny DOM builder. It never parses HTML: text always goes in through text nodes, attributes
// through setAttribute, so untrusted text from Partner Center or DNS stays text.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Properties set as DOM properties rather than attributes.
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'tabIndex', 'indeterminate']);

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value));
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) if (v != null) el.dataset[k] = String(v);
    } else if (key === 'style') {
      // CSSOM only (allowed by the CSP); never a style="" attribute.
      for (const [k, v] of Object.entries(value)) el.style.setProperty(k, String(v));
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key.startsWith('on') || key === 'innerHTML' || key === 'outerHTML' || key === 'srcdoc') {
      throw new Error(`h(): refusing to set ${key}`);
    } else if (PROPS.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

/** Appends children: nodes as they are, anything else as a text node; null/false skipped. */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h('tr', {class: 'row', onclick: fn}, 'text', otherNode) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, children);
}

/** Replaces every child of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Debounce: fn runs once, `ms` after the last call. */
export function debounce(fn, ms) {
  let timer;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** A visually hidden text for screen readers. */
export function srOnly(text) {
  return h('span', { class: 'sr-only' }, text);
}

let idCounter = 0;
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * Re-renders part of the page without losing the keyboard focus: the focused control (found
 * again by its data-kpi, data-sort, data-action or id) is focused again afterwards, or the first
 * enabled button when it became disabled.
 */
export function keepFocus(container, render) {
  const active = document.activeElement;
  let selector = null;
  if (active && active !== document.body && container.contains(active)) {
    for (const attr of ['data-kpi', 'data-sort', 'data-action', 'id']) {
      if (active.hasAttribute(attr)) {
        selector = `[${attr}="${CSS.escape(active.getAttribute(attr))}"]`;
        break;
      }
    }
  }
  render();
  if (!selector) return;
  const again = container.querySelector(selector);
  if (again && !again.disabled) again.focus();
  else (container.querySelector('button:not([disabled])') || container.querySelector('select'))?.focus();
}
