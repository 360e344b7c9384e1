// The contract between the daemon's local HTTP API server and the parts that
// add endpoints to it: a route (method, path pattern, handler over a parsed
// request), a report section (a named part of GET /report), and how an error
// thrown by a handler becomes an HTTP status. It lives in common/ because
// every part uses it and none owns it: router/api/ implements the server;
// router/api, ipam/ and dns/ export their endpoints as plain ApiEndpoints
// values; cli/daemon.ts mounts them (docs/architecture.md). So ipam/ and dns/
// never import the server, and the server never imports them.
//
// Types, one error class and one pure function; no I/O.

import { CodedError } from './errors';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One request as a handler sees it: already routed, its body read and parsed. */
export interface ApiRequest {
  method: string;
  /** Path without query string and without a trailing slash. */
  path: string;
  /** Values of `:name` segments in the route's path pattern. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body; undefined when the body was empty. */
  body: unknown;
  /** Runs `fn` once the response has been written (e.g. stop after replying). */
  afterResponse(fn: () => void): void;
}

/**
 * Whatever a handler returns (or its promise resolves to) is the 200 reply,
 * sent as JSON. To refuse, it throws: see httpStatusOf for the status.
 */
export type ApiHandler = (req: ApiRequest) => unknown;

export interface ApiRoute {
  method: HttpMethod;
  /** A path such as `/ipam/containers/:container`; a `:name` segment matches one URL-decoded path segment into `params.name`. */
  path: string;
  handler: ApiHandler;
}

/** A part of GET /report under `name`. `build` may be async; if it throws, that section alone reads `{error}`. */
export interface ReportSection {
  name: string;
  build: () => unknown;
}

/** What one part of the daemon adds to the API. */
export interface ApiEndpoints {
  routes: readonly ApiRoute[];
  reportSections: readonly ReportSection[];
}

/** Thrown by handlers to answer with a specific status and message. */
export class HttpError extends Error {
  override readonly name = 'HttpError';

  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The status a thrown error is answered with, its message being the reply's
 * `error`: an HttpError carries its own; an error whose `code` is 'config'
 * (every part's error class extends CodedError and uses that code for a
 * request or option that is the caller's fault) is 400; anything else is the daemon's
 * fault, 500.
 */
export function httpStatusOf(err: unknown): number {
  if (err instanceof HttpError) return err.statusCode;
  if (err instanceof CodedError && err.code === 'config') return 400;
  return 500;
}
