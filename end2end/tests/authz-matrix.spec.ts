// The authorization matrix, generated from the server's own route table
// (`portal-server --print-routes`): every API route × {anonymous, viewer, member, tenant
// admin of another tenant, tenant admin, provider admin} must answer the expected status —
// 401 without a session, 403 for a forbidden action, 404 for another tenant's object. A
// route that has no row in POLICY below fails the test: a new route needs a policy.
import { APIRequestContext, expect, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { adminPassword, call, invite as inviteAs, session, sshEd25519 } from "./api";

type Role = "anonymous" | "viewer" | "member" | "otherAdmin" | "tenantAdmin" | "providerAdmin";
const ROLES: Role[] = ["anonymous", "viewer", "member", "otherAdmin", "tenantAdmin", "providerAdmin"];

/// What the matrix needs of the world: ids made by the provider admin before each call.
interface World {
  home: string; // the provider admin's own tenant ("default"), where viewer/member/tenantAdmin live
  scratchTenant: string;
  scratchUser: string; // a user of `home`
  instanceOfHome: () => Promise<string>; // a fresh instance in `home`
  runningOfHome: () => Promise<string>; // one running instance in `home` (made once)
  typeName: () => Promise<string>; // a fresh instance type
  imageId: () => Promise<string>; // a fresh image
  keyOfAdmin: () => Promise<string>; // a fresh SSH key of the provider admin
  vpcOfHome: () => Promise<string>; // a fresh, empty VPC in `home`
  subnetOfHome: () => Promise<string>; // a fresh subnet of a fresh VPC in `home`
  groupOfHome: () => Promise<string>; // a fresh security group in `home`
  ruleOfHome: () => Promise<string>; // a fresh rule of a fresh group in `home`
  publicIpOfHome: () => Promise<string>; // a fresh, free public IP of `home` (from the world's pool)
  attachOfHome: () => Promise<{ ip: string; instance: string }>; // one public IP of `home` and the running instance it goes to (made once)
  poolOf: () => Promise<string>; // a fresh, empty public IP pool
  providerOf: () => Promise<string>; // a fresh identity provider (removed after the matrix)
}

type Expect = Record<Role, number>;
const all = (code: number): Expect => ({ anonymous: 401, viewer: code, member: code, otherAdmin: code, tenantAdmin: code, providerAdmin: code });
const providerOnly: Expect = { anonymous: 401, viewer: 403, member: 403, otherAdmin: 403, tenantAdmin: 403, providerAdmin: 200 };
const tenantAdmins: Expect = { anonymous: 401, viewer: 403, member: 403, otherAdmin: 200, tenantAdmin: 200, providerAdmin: 200 };
/// Members and admins change their own tenant's networks; another tenant's are not found.
const homeWriters: Expect = { anonymous: 401, viewer: 403, member: 200, otherAdmin: 404, tenantAdmin: 200, providerAdmin: 200 };
const homeAdmins: Expect = { anonymous: 401, viewer: 403, member: 403, otherAdmin: 404, tenantAdmin: 200, providerAdmin: 200 };

/// `YYYY-MM` of now (UTC), the month the billing rows ask for.
const thisMonth = new Date().toISOString().slice(0, 7);

interface Policy {
  expect: Expect | "public";
  form: (w: World, role: Role) => Promise<Record<string, string>> | Record<string, string>;
  /// The path to call, for routes with parameters in their path (made again for each role).
  path?: (w: World) => Promise<string>;
  /// A JSON body instead of the form (the REST API).
  json?: (w: World, role: Role) => Promise<object> | object;
}

/// A REST route's expectation: `code` where `from` expects 200.
const answering = (from: Expect, code: number): Expect =>
  Object.fromEntries(ROLES.map((r) => [r, from[r] === 200 ? code : from[r]])) as Expect;
const none = () => ({});
/// An identity provider's settings over REST. Its issuer is never fetched (discovery happens
/// at sign-in), so it need not exist.
const idpSettings = { display_name: "", issuer_url: "https://idp.mx.example", client_id: "portal", tenant: "default", default_role: "viewer" };

const POLICY: Record<string, Policy> = {
  // The REST API (`/api/v1`): the same authorization as the server functions below, through
  // the browser's session here (tokens in server/tests/rest_api.rs).
  "GET /api/v1/openapi.json": { expect: "public", form: none },
  "GET /api/v1/docs": { expect: "public", form: none },
  "GET /api/v1/me": { expect: all(200), form: none },
  "GET /api/v1/instances": { expect: all(200), form: none },
  "POST /api/v1/instances": {
    expect: answering({ ...all(200), viewer: 403 }, 202),
    form: none,
    json: (_w, role) => ({ name: `mx-rest-${role.toLowerCase()}`, instance_type: "c8m32" }),
  },
  "GET /api/v1/instances/{id}": { expect: { ...all(200), otherAdmin: 404 }, form: none, path: async (w) => `/api/v1/instances/${await w.instanceOfHome()}` },
  "DELETE /api/v1/instances/{id}": {
    expect: { anonymous: 401, viewer: 403, member: 202, otherAdmin: 404, tenantAdmin: 202, providerAdmin: 202 },
    form: none,
    path: async (w) => `/api/v1/instances/${await w.instanceOfHome()}`,
  },
  // Those allowed pass authorization and are stopped by the fresh instance still provisioning (409).
  "POST /api/v1/instances/{id}/{action}": {
    expect: { anonymous: 401, viewer: 403, member: 409, otherAdmin: 404, tenantAdmin: 409, providerAdmin: 409 },
    form: none,
    json: () => ({}),
    path: async (w) => `/api/v1/instances/${await w.instanceOfHome()}/stop`,
  },
  "GET /api/v1/instance-types": { expect: all(200), form: none },
  "POST /api/v1/instance-types": {
    expect: answering(providerOnly, 201),
    form: none,
    json: (_w, role) => ({
      name: `mx-rest-${role.toLowerCase()}`, gpu_model: "", gpu_count: 0, vcpus: 2, memory_gib: 4, disk_gib: 20, price_cents_per_hour: 1,
    }),
  },
  "DELETE /api/v1/instance-types/{name}": { expect: answering(providerOnly, 204), form: none, path: async (w) => `/api/v1/instance-types/${await w.typeName()}` },
  "GET /api/v1/images": { expect: all(200), form: none },
  "POST /api/v1/images": {
    expect: answering(providerOnly, 201),
    form: none,
    json: (_w, role) => ({
      name: `mx-rest-image-${role.toLowerCase()}`, os: "Test OS", cuda_version: "", driver_version: "", default_user: "root", source: "mx.qcow2",
    }),
  },
  "POST /api/v1/images/{id}/retire": { expect: providerOnly, form: none, json: () => ({}), path: async (w) => `/api/v1/images/${await w.imageId()}/retire` },
  "GET /api/v1/ssh-keys": { expect: all(200), form: none },
  "POST /api/v1/ssh-keys": {
    expect: all(201),
    form: none,
    json: (_w, role) => ({ name: `mx-rest-${role.toLowerCase()}`, public_key: sshEd25519(200 + ROLES.indexOf(role)) }),
  },
  "DELETE /api/v1/ssh-keys/{id}": { expect: { ...all(404), providerAdmin: 204 }, form: none, path: async (w) => `/api/v1/ssh-keys/${await w.keyOfAdmin()}` },
  "GET /api/v1/network": { expect: all(200), form: none },
  "POST /api/v1/vpcs": { expect: answering({ ...all(200), viewer: 403 }, 201), form: none, json: (_w, role) => ({ name: `mx-rest-${role.toLowerCase()}` }) },
  "DELETE /api/v1/vpcs/{id}": { expect: answering(homeWriters, 204), form: none, path: async (w) => `/api/v1/vpcs/${await w.vpcOfHome()}` },
  "POST /api/v1/subnets": {
    expect: answering(homeWriters, 201),
    form: none,
    json: async (w, role) => ({ vpc: await w.vpcOfHome(), name: `mx-rest-${role.toLowerCase()}`, cidr: "10.202.0.0/24" }),
  },
  "DELETE /api/v1/subnets/{id}": { expect: answering(homeWriters, 204), form: none, path: async (w) => `/api/v1/subnets/${await w.subnetOfHome()}` },
  "POST /api/v1/security-groups": {
    expect: answering({ ...all(200), viewer: 403 }, 201),
    form: none,
    json: (_w, role) => ({ name: `mx-rest-${role.toLowerCase()}`, description: "" }),
  },
  "DELETE /api/v1/security-groups/{id}": { expect: answering(homeWriters, 204), form: none, path: async (w) => `/api/v1/security-groups/${await w.groupOfHome()}` },
  "POST /api/v1/security-rules": {
    expect: answering(homeWriters, 201),
    form: none,
    json: async (w) => ({ group: await w.groupOfHome(), direction: "ingress", protocol: "tcp", ports: "22", remote_cidr: "10.0.0.0/8" }),
  },
  "DELETE /api/v1/security-rules/{id}": { expect: answering(homeWriters, 204), form: none, path: async (w) => `/api/v1/security-rules/${await w.ruleOfHome()}` },
  // Public IPs: everyone reads their tenant's (and the pools); members and admins take,
  // attach, detach and release them; another tenant's are not found; pools are the provider's.
  "GET /api/v1/public-ips": { expect: all(200), form: none },
  "POST /api/v1/public-ips": {
    expect: answering({ ...all(200), viewer: 403 }, 201),
    form: none,
    json: (_w, role) => ({ name: `mx-rest-${role.toLowerCase()}` }),
  },
  "GET /api/v1/public-ips/{id}": { expect: { ...all(200), otherAdmin: 404 }, form: none, path: async (w) => `/api/v1/public-ips/${await w.publicIpOfHome()}` },
  "DELETE /api/v1/public-ips/{id}": { expect: answering(homeWriters, 204), form: none, path: async (w) => `/api/v1/public-ips/${await w.publicIpOfHome()}` },
  // Attaching the same address to the same instance again changes nothing (and is allowed).
  "POST /api/v1/public-ips/{id}/attach": {
    expect: homeWriters,
    form: none,
    json: async (w) => ({ instance: (await w.attachOfHome()).instance }),
    path: async (w) => `/api/v1/public-ips/${(await w.attachOfHome()).ip}/attach`,
  },
  "POST /api/v1/public-ips/{id}/detach": { expect: homeWriters, form: none, json: () => ({}), path: async (w) => `/api/v1/public-ips/${await w.publicIpOfHome()}/detach` },
  "GET /api/v1/public-ip-pools": { expect: all(200), form: none },
  "POST /api/v1/public-ip-pools": {
    expect: answering(providerOnly, 201),
    form: none,
    json: (_w, role) => ({ name: `mx-rest-pool-${role.toLowerCase()}`, cidr: "198.18.2.0/30" }),
  },
  "DELETE /api/v1/public-ip-pools/{id}": { expect: answering(providerOnly, 204), form: none, path: async (w) => `/api/v1/public-ip-pools/${await w.poolOf()}` },
  "GET /api/v1/usage": { expect: all(200), form: none },
  "GET /api/v1/usage/invoices/{month}": { expect: all(200), form: none, path: async () => `/api/v1/usage/invoices/${thisMonth}` },
  "PUT /api/v1/usage/budget": { expect: answering(tenantAdmins, 204), form: none, json: () => ({ monthly: "" }) },
  "GET /api/v1/tenants": { expect: providerOnly, form: none },
  "POST /api/v1/tenants": { expect: answering(providerOnly, 201), form: none, json: (_w, role) => ({ name: `rest-${role.toLowerCase()}` }) },
  "GET /api/v1/users": { expect: homeAdmins, form: none, path: async (w) => `/api/v1/users?tenant=${w.home}` },
  "POST /api/v1/users": {
    expect: answering(homeAdmins, 201),
    form: none,
    json: (w, role) => ({ tenant_id: w.home, username: `mx-rest-${role.toLowerCase()}`, role: "viewer" }),
  },
  "GET /api/v1/admin/usage": { expect: providerOnly, form: none },
  "GET /api/v1/admin/prices": { expect: providerOnly, form: none },
  "GET /api/v1/quotas": { expect: { ...all(200), otherAdmin: 404 }, form: none, path: async (w) => `/api/v1/quotas?tenant=${w.home}` },
  "PUT /api/v1/quotas/{resource}": {
    expect: providerOnly,
    form: none,
    json: (w) => ({ tenant_id: w.home, limit: "unlimited" }),
    path: async () => "/api/v1/quotas/instances",
  },
  "GET /api/v1/capacity": { expect: all(200), form: none },
  "GET /api/v1/audit": { expect: tenantAdmins, form: none },
  "GET /api/v1/admin/hosts": { expect: providerOnly, form: none },
  "GET /api/v1/admin/scalable-units/{su}/fabric": { expect: providerOnly, form: none, path: async () => "/api/v1/admin/scalable-units/su1/fabric" },
  "GET /api/v1/admin/scalable-units/{su}/topology": { expect: providerOnly, form: none, path: async () => "/api/v1/admin/scalable-units/su1/topology" },
  "GET /api/v1/admin/hosts/{name}/topology": { expect: providerOnly, form: none, path: async () => "/api/v1/admin/hosts/su1-h01/topology" },
  "GET /api/v1/default-quotas": { expect: providerOnly, form: none },
  // A default for a GPU model no host has: allowed, and harmless to the other tests.
  "PUT /api/v1/default-quotas/{resource}": { expect: providerOnly, form: none, json: () => ({ limit: "0" }), path: async () => "/api/v1/default-quotas/gpus:MX-NONE" },
  "GET /api/v1/tenants/{id}/deletion": { expect: providerOnly, form: none, path: async (w) => `/api/v1/tenants/${w.scratchTenant}/deletion` },
  // The provider admin passes authorization and is stopped by the name not repeated (400).
  "DELETE /api/v1/tenants/{id}": { expect: { ...providerOnly, providerAdmin: 400 }, form: none, path: async (w) => `/api/v1/tenants/${w.scratchTenant}?confirm=not-its-name` },
  // The caller's own account through the browser's session (tokens only read it).
  "GET /api/v1/account/sessions": { expect: all(200), form: none },
  "DELETE /api/v1/account/sessions/{label}": { expect: all(404), form: none, path: async () => "/api/v1/account/sessions/0123456789abcdef" },
  "GET /api/v1/account/tokens": { expect: all(200), form: none },
  "POST /api/v1/account/tokens": { expect: answering(all(200), 201), form: none, json: (_w, role) => ({ name: `mx-rest-${role}`, role: "viewer", days: 1 }) },
  "DELETE /api/v1/account/tokens/{id}": { expect: all(404), form: none, path: async () => "/api/v1/account/tokens/00000000-0000-4000-8000-000000000000" },
  // Everyone passes authorization and is stopped by the new password being too short (400).
  "POST /api/v1/account/password": { expect: all(400), form: none, json: () => ({ current: "wrong", new: "x", repeat: "x" }) },
  "PUT /api/v1/admin/hosts/{name}/cordon": {
    expect: answering(providerOnly, 204),
    form: none,
    json: () => ({ cordoned: false }),
    path: async () => "/api/v1/admin/hosts/su2-h32/cordon",
  },
  "PUT /api/v1/tenants/{id}/suspended": {
    expect: providerOnly,
    form: none,
    json: () => ({ suspended: false }),
    path: async (w) => `/api/v1/tenants/${w.scratchTenant}/suspended`,
  },
  "PUT /api/v1/users/{id}/role": {
    expect: answering(homeAdmins, 204),
    form: none,
    json: (w) => ({ tenant_id: w.home, role: "member" }),
    path: async (w) => `/api/v1/users/${w.scratchUser}/role`,
  },
  "PUT /api/v1/users/{id}/disabled": {
    expect: answering(homeAdmins, 204),
    form: none,
    json: (w) => ({ tenant_id: w.home, disabled: false }),
    path: async (w) => `/api/v1/users/${w.scratchUser}/disabled`,
  },
  // The provider admin passes authorization and is stopped by the start in the past (400).
  "POST /api/v1/admin/prices": {
    expect: { ...providerOnly, providerAdmin: 400 },
    form: none,
    json: () => ({ item: "type:c8m32", price: "0.24", effective_from: "2020-01-01T00:00" }),
  },
  // Identity providers are the provider admin's; fresh ones per role, removed afterwards.
  "GET /api/v1/identity-providers": { expect: providerOnly, form: none },
  "POST /api/v1/identity-providers": {
    expect: answering(providerOnly, 201),
    form: none,
    json: (_w, role) => ({ ...idpSettings, name: `mx-rest-idp-${role.toLowerCase()}` }),
  },
  "GET /api/v1/identity-providers/{name}": { expect: providerOnly, form: none, path: async (w) => `/api/v1/identity-providers/${await w.providerOf()}` },
  "PUT /api/v1/identity-providers/{name}": {
    expect: providerOnly,
    form: none,
    json: () => ({ ...idpSettings, display_name: "Changed" }),
    path: async (w) => `/api/v1/identity-providers/${await w.providerOf()}`,
  },
  "DELETE /api/v1/identity-providers/{name}": {
    expect: answering(providerOnly, 204),
    form: none,
    path: async (w) => `/api/v1/identity-providers/${await w.providerOf()}`,
  },
  "POST /api/fn/login": { expect: "public", form: () => ({}) },
  "POST /api/fn/logout": { expect: "public", form: () => ({}) },
  "POST /api/fn/identity_provider_buttons": { expect: "public", form: () => ({}) },
  "POST /api/fn/sso_refusal": { expect: "public", form: () => ({ reference: "0123456789abcdef" }) },
  "GET /api/v1/events": { expect: "public", form: () => ({}) }, // a stream: covered in skeleton.spec.ts
  "POST /api/fn/get_me": { expect: all(200), form: () => ({}) },
  "POST /api/fn/capacity": { expect: all(200), form: () => ({}) },
  "POST /api/fn/instance_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/instance_type_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/launch_options": { expect: all(200), form: () => ({}) },
  "POST /api/fn/fleet_summary": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/host_set_cordoned": { expect: providerOnly, form: () => ({ host: "su2-h32", cordoned: "false" }) },
  "POST /api/fn/host_topology": { expect: providerOnly, form: () => ({ name: "su1-h01" }) },
  "POST /api/fn/stray_vm_list": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/scalable_unit_topology": { expect: providerOnly, form: () => ({ su: "su1" }) },
  "POST /api/fn/scalable_unit_fabric": { expect: providerOnly, form: () => ({ su: "su1" }) },
  // Everyone signed in passes authorization and is stopped by the wrong current password.
  "POST /api/fn/password_change": {
    expect: { anonymous: 401, viewer: 400, member: 400, otherAdmin: 400, tenantAdmin: 400, providerAdmin: 400 },
    form: () => ({ current: "not-the-password", new: "a-brand-new-password", repeat: "a-brand-new-password" }),
  },
  "POST /api/fn/tenant_list": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/tenant_create": { expect: providerOnly, form: (_w, role) => ({ name: `t-${role.toLowerCase()}` }) },
  "POST /api/fn/tenant_set_suspended": { expect: providerOnly, form: (w) => ({ tenant_id: w.scratchTenant, suspended: "false" }) },
  "POST /api/fn/tenant_deletion_preview": { expect: providerOnly, form: (w) => ({ tenant_id: w.scratchTenant }) },
  // The provider admin passes authorization and is stopped by the wrong name (400).
  "POST /api/fn/tenant_delete": {
    expect: { ...providerOnly, providerAdmin: 400 },
    form: (w) => ({ tenant_id: w.scratchTenant, confirm_name: "not-its-name" }),
  },
  "POST /api/fn/instance_type_create": {
    expect: providerOnly,
    form: (_w, role) => ({
      "create[name]": `mx-${role.toLowerCase()}`, "create[gpu_model]": "", "create[gpu_count]": "0",
      "create[vcpus]": "2", "create[memory_gib]": "4", "create[disk_gib]": "20", "create[price_cents_per_hour]": "1",
    }),
  },
  "POST /api/fn/instance_type_delete": { expect: providerOnly, form: async (w) => ({ name: await w.typeName() }) },
  // Everyone signed in reads the active images; with_retired is honoured for provider admins only.
  "POST /api/fn/image_list": { expect: all(200), form: () => ({ with_retired: "true" }) },
  "POST /api/fn/image_create": {
    expect: providerOnly,
    form: (_w, role) => ({
      "create[name]": `mx-image-${role.toLowerCase()}`, "create[os]": "Test OS", "create[cuda_version]": "",
      "create[driver_version]": "", "create[default_user]": "root", "create[source]": "mx.qcow2",
    }),
  },
  "POST /api/fn/image_retire": { expect: providerOnly, form: async (w) => ({ id: await w.imageId() }) },
  "POST /api/fn/quota_get": { expect: { ...all(200), otherAdmin: 404 }, form: (w) => ({ tenant_id: w.home }) },
  "POST /api/fn/quota_set": { expect: providerOnly, form: (w) => ({ tenant_id: w.home, resource: "instances", limit: "unlimited" }) },
  "POST /api/fn/quota_default_list": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/quota_default_set": { expect: providerOnly, form: () => ({ resource: "instances", limit: "10" }) },
  "POST /api/fn/instance_create": {
    expect: { anonymous: 401, viewer: 403, member: 200, otherAdmin: 200, tenantAdmin: 200, providerAdmin: 200 },
    form: (_w, role) => ({ "create[name]": `mx-${role.toLowerCase()}`, "create[instance_type]": "c8m32" }),
  },
  // Everyone in the instance's tenant reads it (its page, /instances/<id>); another tenant's
  // admin does not find it.
  "POST /api/fn/instance_get": {
    expect: { ...all(200), otherAdmin: 404 },
    form: async (w) => ({ id: await w.instanceOfHome() }),
  },
  // Its ports' counters, read from the DPU, for the same readers (the page's network section).
  "POST /api/fn/instance_port_counters": {
    expect: { ...all(200), otherAdmin: 404 },
    form: async (w) => ({ id: await w.runningOfHome() }),
  },
  "POST /api/fn/instance_delete": {
    expect: { anonymous: 401, viewer: 403, member: 200, otherAdmin: 404, tenantAdmin: 200, providerAdmin: 200 },
    form: async (w) => ({ id: await w.instanceOfHome() }),
  },
  // Those allowed pass authorization and are stopped by the fresh instance still provisioning (409).
  "POST /api/fn/instance_power": {
    expect: { anonymous: 401, viewer: 403, member: 409, otherAdmin: 404, tenantAdmin: 409, providerAdmin: 409 },
    form: async (w) => ({ id: await w.instanceOfHome(), action: "stop" }),
  },
  // The serial console's WebSocket: everyone in the tenant may open it (viewers read-only,
  // see console.spec.ts); a request without the WebSocket handshake is told to upgrade (426).
  "GET /instances/{id}/console/ws": {
    expect: { anonymous: 401, viewer: 426, member: 426, otherAdmin: 404, tenantAdmin: 426, providerAdmin: 426 },
    form: () => ({}),
    path: async (w) => `/instances/${await w.runningOfHome()}/console/ws`,
  },
  "POST /api/fn/user_list": { expect: homeAdmins, form: (w) => ({ tenant_id: w.home }) },
  "POST /api/fn/user_invite": { expect: homeAdmins, form: (w, role) => ({ tenant_id: w.home, username: `mx-${role.toLowerCase()}`, role: "viewer" }) },
  "POST /api/fn/user_set_role": { expect: homeAdmins, form: (w) => ({ tenant_id: w.home, user_id: w.scratchUser, role: "viewer" }) },
  "POST /api/fn/user_set_disabled": { expect: homeAdmins, form: (w) => ({ tenant_id: w.home, user_id: w.scratchUser, disabled: "false" }) },
  "POST /api/fn/audit_list": { expect: tenantAdmins, form: () => ({}) },
  // The provider admin passes authorization and is stopped by the unknown user (404).
  "POST /api/fn/user_add_to_tenant": {
    expect: { ...providerOnly, providerAdmin: 404 },
    form: (w) => ({ tenant_id: w.scratchTenant, username: "no-such-user", role: "viewer" }),
  },
  // Only tenants one belongs to: nobody is in the scratch tenant.
  "POST /api/fn/tenant_switch": { expect: all(404), form: (w) => ({ tenant_id: w.scratchTenant }) },
  "POST /api/fn/api_token_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/session_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/session_end": { expect: all(404), form: () => ({ label: "000000000000" }) },
  "POST /api/fn/api_token_create": {
    expect: { ...all(200), viewer: 403 }, // a viewer cannot make a member token
    form: (_w, role) => ({ name: `mx-${role.toLowerCase()}`, role: "member", days: "1" }),
  },
  // Another user's token is not found, whoever asks.
  "POST /api/fn/api_token_revoke": { expect: all(404), form: () => ({ id: "00000000-0000-4000-8000-000000000000" }) },
  // Every role keeps its own SSH keys, viewers too; anyone else's key is not found.
  "POST /api/fn/ssh_key_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/ssh_key_create": {
    expect: all(200),
    form: (_w, role) => ({ "create[name]": `mx-${role.toLowerCase()}`, "create[public_key]": sshEd25519(ROLES.indexOf(role)) }),
  },
  "POST /api/fn/ssh_key_delete": {
    expect: { ...all(404), providerAdmin: 200 },
    form: async (w) => ({ id: await w.keyOfAdmin() }),
  },
  // Everyone reads their tenant's networks; members and admins change them.
  "POST /api/fn/network_overview": { expect: all(200), form: () => ({}) },
  "POST /api/fn/vpc_create": { expect: { ...all(200), viewer: 403 }, form: (_w, role) => ({ "create[name]": `mx-${role.toLowerCase()}` }) },
  "POST /api/fn/vpc_delete": { expect: homeWriters, form: async (w) => ({ id: await w.vpcOfHome() }) },
  "POST /api/fn/subnet_create": {
    expect: homeWriters,
    form: async (w, role) => ({
      "create[vpc]": await w.vpcOfHome(), "create[name]": `mx-${role.toLowerCase()}`, "create[cidr]": "10.200.0.0/24",
    }),
  },
  "POST /api/fn/subnet_delete": { expect: homeWriters, form: async (w) => ({ id: await w.subnetOfHome() }) },
  "POST /api/fn/security_group_create": {
    expect: { ...all(200), viewer: 403 },
    form: (_w, role) => ({ "create[name]": `mx-${role.toLowerCase()}`, "create[description]": "" }),
  },
  "POST /api/fn/security_group_delete": { expect: homeWriters, form: async (w) => ({ id: await w.groupOfHome() }) },
  "POST /api/fn/security_rule_create": {
    expect: homeWriters,
    form: async (w) => ({
      "create[group]": await w.groupOfHome(), "create[direction]": "ingress", "create[protocol]": "tcp",
      "create[ports]": "22", "create[remote_cidr]": "10.0.0.0/8",
    }),
  },
  "POST /api/fn/security_rule_delete": { expect: homeWriters, form: async (w) => ({ id: await w.ruleOfHome() }) },
  "POST /api/fn/public_ip_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/public_ip_get": { expect: { ...all(200), otherAdmin: 404 }, form: async (w) => ({ id: await w.publicIpOfHome() }) },
  "POST /api/fn/public_ip_allocate": { expect: { ...all(200), viewer: 403 }, form: (_w, role) => ({ "create[name]": `mx-${role.toLowerCase()}` }) },
  "POST /api/fn/public_ip_attach": {
    expect: homeWriters,
    form: async (w) => {
      const { ip, instance } = await w.attachOfHome();
      return { id: ip, instance };
    },
  },
  "POST /api/fn/public_ip_detach": { expect: homeWriters, form: async (w) => ({ id: await w.publicIpOfHome() }) },
  "POST /api/fn/public_ip_release": { expect: homeWriters, form: async (w) => ({ id: await w.publicIpOfHome() }) },
  "POST /api/fn/public_ip_pool_list": { expect: all(200), form: () => ({}) },
  "POST /api/fn/public_ip_pool_create": {
    expect: providerOnly,
    form: (_w, role) => ({ "create[name]": `mx-pool-${role.toLowerCase()}`, "create[cidr]": "198.18.1.0/30" }),
  },
  "POST /api/fn/public_ip_pool_delete": { expect: providerOnly, form: async (w) => ({ id: await w.poolOf() }) },
  // Metering and billing: every tenant role reads its own usage and invoices (another
  // tenant's admin gets their own tenant's); tenant admins set their budget (empty clears
  // it); the fleet's usage, prices and credit are the provider's.
  "POST /api/fn/usage_summary": { expect: all(200), form: () => ({}) },
  "POST /api/fn/invoice_get": { expect: all(200), form: () => ({ month: thisMonth }) },
  "POST /api/fn/budget_set": { expect: tenantAdmins, form: () => ({ "set[monthly]": "" }) },
  "POST /api/fn/provider_usage": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/price_list": { expect: providerOnly, form: () => ({}) },
  // The provider admin passes authorization and is stopped by the start in the past (400).
  "POST /api/fn/price_set": {
    expect: { ...providerOnly, providerAdmin: 400 },
    form: () => ({ "set[item]": "type:c8m32", "set[price]": "0.24", "set[effective_from]": "2020-01-01T00:00" }),
  },
  "POST /api/fn/credit_grant": {
    expect: providerOnly,
    form: (w) => ({ tenant: w.scratchTenant, "grant[amount]": "1.00", "grant[note]": "matrix" }),
  },
  "GET /usage/invoices/{month}/csv": { expect: all(200), form: () => ({}), path: async () => `/usage/invoices/${thisMonth}/csv` },
  "GET /admin/usage/{month}/csv": { expect: providerOnly, form: () => ({}), path: async () => `/admin/usage/${thisMonth}/csv` },
  "POST /api/fn/identity_provider_list": { expect: providerOnly, form: () => ({}) },
  "POST /api/fn/identity_provider_delete": { expect: { ...providerOnly, providerAdmin: 404 }, form: () => ({ name: "no-such-provider" }) },
  "POST /api/fn/identity_provider_create": {
    // Authorized, then refused for its empty fields (400).
    expect: { ...providerOnly, providerAdmin: 400 },
    form: () => ({
      "form[name]": "", "form[display_name]": "", "form[issuer_url]": "", "form[client_id]": "",
      "form[client_secret]": "", "form[tenant]": "", "form[email_domains]": "", "form[group_claim]": "",
      "form[role_rules]": "", "form[default_role]": "",
    }),
  },
};

test("every route answers every role as its policy says", async () => {
  test.setTimeout(180_000);
  const routes = execFileSync("../target/debug/portal-server", ["--print-routes"], { encoding: "utf8" })
    .trim()
    .split("\n");
  const missing = routes.filter((r) => !(r in POLICY));
  expect(missing, "routes without a policy in authz-matrix.spec.ts").toEqual([]);

  // The world: users of every role in the admin's tenant, and an admin of another tenant.
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const invite = (tenant: string, username: string, role: string) => inviteAs(admin, tenant, username, role);
  const other = await call<{ id: string }>(admin, "tenant_create", { name: "matrix-other" });
  const scratch = await call<{ id: string }>(admin, "tenant_create", { name: "matrix-scratch" });
  const users: Record<string, { user: { id: string }; one_time_password: string }> = {
    viewer: await invite(me.tenant_id, "mx-viewer-user", "viewer"),
    member: await invite(me.tenant_id, "mx-member-user", "member"),
    tenantAdmin: await invite(me.tenant_id, "mx-admin-user", "tenant-admin"),
    otherAdmin: await invite(other.id, "mx-other-admin", "tenant-admin"),
    scratch: await invite(me.tenant_id, "mx-scratch-user", "member"),
  };
  let counter = 0;
  let keys = 0;
  let pools = 0;
  let running: string | undefined;
  let attach: { ip: string; instance: string } | undefined;
  // Public IPs come from a pool of the world's; the home tenant may hold as many as the
  // rows take (its default quota is 5).
  await call(admin, "public_ip_pool_create", { "create[name]": "mx-world", "create[cidr]": "198.18.0.0/24" });
  await call(admin, "quota_set", { tenant_id: me.tenant_id, resource: "public_ips", limit: "unlimited" });
  const world: World = {
    home: me.tenant_id,
    scratchTenant: scratch.id,
    scratchUser: users.scratch.user.id,
    instanceOfHome: async () => {
      const made = await call<{ id: string }[]>(admin, "instance_create", {
        "create[name]": `mx-target-${++counter}`, "create[instance_type]": "c8m32",
      });
      return made[0].id;
    },
    runningOfHome: async () => {
      if (!running) {
        const id = await world.instanceOfHome();
        await expect
          .poll(async () => (await call<{ instance: { state: string } }>(admin, "instance_get", { id })).instance.state, { timeout: 20_000 })
          .toBe("Running");
        running = id;
      }
      return running;
    },
    typeName: async () => {
      const name = `mx-type-${++counter}`;
      await call(admin, "instance_type_create", {
        "create[name]": name, "create[gpu_model]": "", "create[gpu_count]": "0", "create[vcpus]": "2",
        "create[memory_gib]": "4", "create[disk_gib]": "20", "create[price_cents_per_hour]": "1",
      });
      return name;
    },
    imageId: async () => {
      const made = await call<{ id: string }>(admin, "image_create", {
        "create[name]": `mx-image-${++counter}`, "create[os]": "Test OS", "create[cuda_version]": "",
        "create[driver_version]": "", "create[default_user]": "root", "create[source]": "mx.qcow2",
      });
      return made.id;
    },
    keyOfAdmin: async () => {
      // Key bytes of their own range (101…), apart from the rows' keys (0… and 200…): the
      // shared counter passes 100 before the REST row runs.
      const made = await call<{ id: string }>(admin, "ssh_key_create", {
        "create[name]": `mx-key-${++counter}`, "create[public_key]": sshEd25519(100 + ++keys),
      });
      return made.id;
    },
    vpcOfHome: async () => (await call<{ id: string }>(admin, "vpc_create", { "create[name]": `mx-vpc-${++counter}` })).id,
    subnetOfHome: async () => {
      const made = await call<{ id: string }>(admin, "subnet_create", {
        "create[vpc]": await world.vpcOfHome(), "create[name]": `mx-subnet-${++counter}`, "create[cidr]": "10.201.0.0/24",
      });
      return made.id;
    },
    groupOfHome: async () => {
      const made = await call<{ id: string }>(admin, "security_group_create", {
        "create[name]": `mx-group-${++counter}`, "create[description]": "",
      });
      return made.id;
    },
    publicIpOfHome: async () => {
      const made = await call<{ id: string }>(admin, "public_ip_allocate", { "create[name]": `mx-ip-${++counter}` });
      return made.id;
    },
    attachOfHome: async () => {
      if (!attach) {
        const instance = await world.runningOfHome();
        const ip = await world.publicIpOfHome();
        attach = { ip, instance };
      }
      return attach;
    },
    poolOf: async () => {
      const made = await call<{ id: string }>(admin, "public_ip_pool_create", {
        "create[name]": `mx-pool-${++counter}`, "create[cidr]": `198.19.${++pools}.0/30`,
      });
      return made.id;
    },
    providerOf: async () => {
      const name = `mx-idp-${++counter}`;
      await call(admin, "identity_provider_create", {
        "form[name]": name, "form[display_name]": "", "form[issuer_url]": idpSettings.issuer_url,
        "form[client_id]": "portal", "form[client_secret]": "", "form[tenant]": "default", "form[email_domains]": "",
        "form[group_claim]": "", "form[role_rules]": "", "form[default_role]": "viewer",
      });
      return name;
    },
    ruleOfHome: async () => {
      const made = await call<{ id: string }>(admin, "security_rule_create", {
        "create[group]": await world.groupOfHome(), "create[direction]": "ingress", "create[protocol]": "tcp",
        "create[ports]": "", "create[remote_cidr]": "0.0.0.0/0",
      });
      return made.id;
    },
  };
  const contexts: Record<Role, APIRequestContext> = {
    anonymous: await session(),
    viewer: await session("mx-viewer-user", users.viewer.one_time_password),
    member: await session("mx-member-user", users.member.one_time_password),
    otherAdmin: await session("mx-other-admin", users.otherAdmin.one_time_password),
    tenantAdmin: await session("mx-admin-user", users.tenantAdmin.one_time_password),
    providerAdmin: admin,
  };

  const failures: string[] = [];
  for (const route of routes) {
    const policy = POLICY[route];
    if (policy.expect === "public") continue;
    const [method, routePath] = route.split(" ");
    for (const role of ROLES) {
      const path = policy.path ? await policy.path(world) : routePath;
      const body = policy.json
        ? { data: await policy.json(world, role) }
        : method === "GET" || method === "DELETE" ? {} : { form: await policy.form(world, role) };
      const r = await contexts[role].fetch(path, { method, ...body });
      if (r.status() !== policy.expect[role]) {
        failures.push(`${route} as ${role}: ${r.status()} (expected ${policy.expect[role]}) ${(await r.text()).slice(0, 160)}`);
      }
    }
  }
  // The identity providers the rows made would be sign-in buttons for the later specs.
  for (const p of await call<{ name: string }[]>(admin, "identity_provider_list", {})) {
    if (p.name.startsWith("mx-")) await call(admin, "identity_provider_delete", { name: p.name });
  }
  expect(failures).toEqual([]);

  // Leave the fleet as we found it: later specs expect empty hosts. The VMs are in the
  // home tenant and in the other admin's.
  type Listed = { id: string; name: string; state: string };
  const ours = (list: Listed[]) => list.filter((i) => i.name.startsWith("mx-"));
  for (const ctx of [admin, contexts.otherAdmin]) {
    for (const i of ours(await call<Listed[]>(ctx, "instance_list", {}))) {
      if (i.state !== "deleting") await call(ctx, "instance_delete", { id: i.id });
    }
    await expect
      .poll(async () => ours(await call<Listed[]>(ctx, "instance_list", {})).length, { timeout: 20_000 })
      .toBe(0);
  }
});
