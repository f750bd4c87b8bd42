// Shared helpers for specs that call the portal's server functions directly.
import { APIRequestContext, expect, request as playwrightRequest } from "@playwright/test";

export const base = process.env.E2E_BASE_URL!;
export const adminPassword = process.env.PORTAL_ADMIN_PASSWORD!;

/// A signed-in request context (anonymous without a username). Invited users choose their
/// own password first, as the portal requires, so the context can do what its role allows.
export async function session(username?: string, password?: string): Promise<APIRequestContext> {
  const ctx = await playwrightRequest.newContext({ baseURL: base });
  if (username) {
    const r = await ctx.post("/api/fn/login", { form: { username, password: password! } });
    expect(r.status(), `sign-in of ${username}`).toBe(200);
    const me = await (await ctx.post("/api/fn/get_me", { form: {} })).json();
    if (me.must_change_password) {
      const own = `${password}-own`;
      const changed = await ctx.post("/api/fn/password_change", { form: { current: password!, new: own, repeat: own } });
      expect(changed.status(), `password change of ${username}`).toBe(200);
    }
  }
  return ctx;
}

/// Calls a server function and returns its JSON answer; anything but 200 fails the test.
export async function call<T>(ctx: APIRequestContext, fn: string, form: Record<string, string>): Promise<T> {
  const r = await ctx.post(`/api/fn/${fn}`, { form });
  expect(r.status(), `${fn}: ${await r.text()}`).toBe(200);
  return (await r.json()) as T;
}

/// The cookies of a signed-in request context, as a Cookie header for Node's fetch.
export async function cookieOf(ctx: APIRequestContext): Promise<string> {
  const { cookies } = await ctx.storageState();
  return cookies.map((c) => `${c.name}=${c.value}`).join("; ");
}

export interface Invited {
  user: { id: string };
  one_time_password: string;
}

/// Invites a user into `tenant` with `role` (as the provider admin `admin`).
export async function invite(admin: APIRequestContext, tenant: string, username: string, role: string): Promise<Invited> {
  return call<Invited>(admin, "user_invite", { tenant_id: tenant, username, role });
}

/// A well-formed ed25519 public key line whose 32 key bytes are all `seed` (the portal does
/// not check the curve point), so tests can make as many distinct keys as they need.
export function sshEd25519(seed: number, comment = ""): string {
  const part = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const wire = Buffer.concat([part(Buffer.from("ssh-ed25519")), part(Buffer.alloc(32, seed))]);
  return `ssh-ed25519 ${wire.toString("base64")}${comment ? ` ${comment}` : ""}`;
}
