@@HEADER@@
import type { @@imports@@ } from "./types.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface Endpoint {
  readonly method: HttpMethod;
  readonly path: string;
  /** Multipart fields that take a file. */
  readonly uploads?: readonly string[];
}

/** Every endpoint of the service (from its OpenAPI document). */
export const ENDPOINTS = {
@@table@@
} as const satisfies Record<string, Endpoint>;

export type EndpointName = keyof typeof ENDPOINTS;

/** Every WebSocket route of the service (the document's `x-websockets`). */
export const WEBSOCKETS = {
@@socket_rows@@
} as const satisfies Record<string, { readonly path: string }>;

export interface ClientOptions {
  /** Where the service runs, e.g. `http://192.168.1.20:8000`; default: the page's own origin (`""`). */
  baseUrl?: string;
  /** A `fetch` implementation (default: the global one). */
  fetch?: typeof fetch;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** The API key when the service has keys on (`EMOTION_API_KEYS`): sent as `Authorization: Bearer`, and as
   * the WebSocket's `token` query parameter (browsers cannot set headers on a WebSocket). */
  apiKey?: string;
}

export interface RequestOptions {
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

export interface UploadOptions extends RequestOptions {
  /** File name sent with the upload (its extension helps the server pick a decoder). */
  filename?: string;
}

/** A non-2xx answer. `body` is the service's `ErrorResponse` for every 4xx it sends. */
export class ApiError extends Error {
  readonly status: number;
  readonly body: ErrorResponse | unknown;

  constructor(status: number, body: ErrorResponse | unknown) {
    const detail = isErrorResponse(body) ? body.detail : JSON.stringify(body);
    super(`HTTP ${status}: ${detail}`);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

export function isErrorResponse(body: unknown): body is ErrorResponse {
  return typeof body === "object" && body !== null && (body as { status?: unknown }).status === "error"
    && typeof (body as { detail?: unknown }).detail === "string";
}

interface SendOptions extends RequestOptions {
  json?: unknown;
  query?: Record<string, unknown>;
  form?: FormData;
}

/** Typed client for every endpoint; one method per endpoint, named after its `operationId`. */
export class EmotionClient {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;
  private readonly apiKey: string | undefined;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.headers = { ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}), ...options.headers };
    this.apiKey = options.apiKey;
  }

@@body@@

  /** `ws://` / `wss://` URL of a WebSocket path, from `baseUrl` (or the page's location). */
  socketUrl(path: string): string {
    const base = this.baseUrl || (typeof location === "undefined" ? "" : location.href);
    if (!base) throw new Error("EmotionClient: set baseUrl to open a WebSocket outside a browser page");
    const url = new URL(path, base.endsWith("/") ? base : `${base}/`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.apiKey) url.searchParams.set("token", this.apiKey);
    return url.href;
  }

  /** Any endpoint by its entry in `ENDPOINTS` (for routes added after this client was generated, use a path). */
  async request<T>(endpoint: Endpoint, options: SendOptions = {}): Promise<T> {
    let url = this.baseUrl + endpoint.path;
    if (options.query) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query)) {
        if (value !== undefined) query.set(key, String(value));
      }
      if ([...query].length) url += `?${query}`;
    }
    const headers: Record<string, string> = { accept: "application/json", ...this.headers, ...options.headers };
    let body: BodyInit | undefined = options.form;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    const response = await this.fetchImpl(url, { method: endpoint.method, headers, body, signal: options.signal });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed as T;
  }

  /** A multipart upload: Blobs are sent as files, anything else as a JSON-encoded field. */
  upload<T>(endpoint: Endpoint, fields: Record<string, unknown>, options: UploadOptions = {}): Promise<T> {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      if (value instanceof Blob) {
        const name = options.filename ?? (value instanceof File ? value.name : `${key}${extension(value.type)}`);
        form.append(key, value, name);
      } else {
        form.append(key, typeof value === "string" ? value : JSON.stringify(value));
      }
    }
    const { filename: _filename, ...rest } = options;
    return this.request<T>(endpoint, { ...rest, form });
  }
}

/** A WebSocket whose server messages are JSON of type `M`. */
export class MessageSocket<M> {
  readonly socket: WebSocket;

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
  }

  /** Resolves once the connection is open. */
  opened(): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.socket.addEventListener("open", () => resolve(), { once: true });
      this.socket.addEventListener("error", () => reject(new Error(`WebSocket ${this.socket.url} failed`)), { once: true });
    });
  }

  /** Calls `listener` with every message (parsed JSON); returns a function that stops it. */
  onMessage(listener: (message: M) => void): () => void {
    const handler = (event: MessageEvent) => {
      if (typeof event.data === "string") listener(JSON.parse(event.data) as M);
    };
    this.socket.addEventListener("message", handler);
    return () => this.socket.removeEventListener("message", handler);
  }

  /** Binary audio (e.g. PCM16 chunks) or a text message. */
  send(data: ArrayBuffer | ArrayBufferView | Blob | string): void {
    this.socket.send(data as ArrayBuffer);
  }

  sendJson(value: unknown): void {
    this.socket.send(JSON.stringify(value));
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason);
  }
}

/** `audio/webm;codecs=opus` → `.webm` (a name for recorded Blobs, which have none). */
function extension(mimeType: string): string {
  const subtype = (mimeType.split(";")[0] ?? "").split("/")[1];
  return subtype ? `.${subtype.replace(/^x-/, "")}` : "";
}

export function createClient(options: ClientOptions = {}): EmotionClient {
  return new EmotionClient(options);
}
