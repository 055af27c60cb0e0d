@@HEADER@@// The web demo's copy of clients/typescript/src/constants.ts and ENDPOINTS (plain JS: the page loads no build).
// @ts-check

/** @type {readonly import("../../../../clients/typescript/src/constants.js").Emotion[]} */
export const EMOTIONS = Object.freeze([@@emotions@@]);

/** @type {Readonly<typeof import("../../../../clients/typescript/src/constants.js").MUSIC_MOODS>} */
export const MUSIC_MOODS = Object.freeze({
@@moods@@
});

export const CONFIDENCE_THRESHOLD = @@CONFIDENCE_THRESHOLD@@;

/** @type {Readonly<Record<string, import("../../../../clients/typescript/src/client.js").Endpoint>>} */
export const ENDPOINTS = Object.freeze({
@@table@@
});

/** @type {Readonly<Record<string, { readonly path: string }>>} */
export const WEBSOCKETS = Object.freeze({
@@socket_rows@@
});
