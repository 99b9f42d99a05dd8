# The four images, one stage each, built from the repository's root:
#
#   podman build --target <app> -t velocity-<app> .    (or docker build; <app>: api, provisioner, cleanup, preview-container)
#
# One install and one build serve all four: each image then takes only its app's
# build, the libs it requires and the packages its built code requires
# (scripts/image-contents.ts). No TypeScript is compiled at run time.

FROM node:20-bookworm-slim AS manifests
WORKDIR /app
COPY apps apps
COPY libs libs
# Only the workspaces' package.json files, so the install below runs again only when they or the lockfile change.
RUN find apps libs -mindepth 2 -maxdepth 2 ! -name package.json -exec rm -rf {} +

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=manifests /app ./
# No install scripts: nothing the images run needs one (native parts come as prebuilt packages).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY nx.json tsconfig.base.json swc.build.json ./
COPY libs libs
COPY apps apps
# Every project the images run, compiled to JavaScript under dist/ (the test-only projects are left out).
RUN NX_DAEMON=false npx nx run-many -t build --exclude=e2e,testing
COPY scripts/image-contents.ts scripts/

# ---- What the api, provisioner and cleanup images start from: production mode, and the
# machines volume's folder (compose: .velocity), created here so the volume is the apps' user's.
FROM node:20-bookworm-slim AS service
WORKDIR /app
RUN mkdir .velocity && chown node:node .velocity
ENV NODE_ENV=production

# ================================================================ api
# The api: HTTP API, session events (SSE), the local preview edge; also the migration step.
#   node dist/apps/api/src/migrate.js                            creates the database and applies supabase/migrations

# ---- What this image holds: the api's build, the libs it requires and their packages (scripts/image-contents.ts).
FROM build AS api-contents
# Nest loads its HTTP adapter by name, not by a require the build shows.
RUN node -r @swc-node/register scripts/image-contents.ts api --package @nestjs/platform-express --out /image

FROM service AS api
COPY --from=api-contents /image ./
COPY supabase/migrations supabase/migrations
ENV API_HOST=0.0.0.0 API_PORT=3000
EXPOSE 3000
USER node
CMD ["node", "dist/apps/api/src/main.js"]

# ================================================================ provisioner
# The provisioner: a BullMQ worker on the `sessions` queue. Scale by running more.
# With the local provider it runs each preview machine as a process beside it: this
# image holds the preview container's build and the packages a machine serves too.

# ---- What this image holds: the provisioner's and the preview container's builds, the libs they
# require, their packages, the templates' packages (machines serve them) and the package managers
# that install projects' dependencies (scripts/image-contents.ts).
FROM build AS provisioner-contents
# bun's binary is an optional dependency of `bun` whose name the provisioner computes (@oven/bun-<os>-<arch>).
RUN node -r @swc-node/register scripts/image-contents.ts provisioner --with preview-container --template-dependencies --package bun --out /image

FROM service AS provisioner
# ps: the local provider finds its machines in the process table. bubblewrap: each machine in a
# sandbox of its own, where the container allows it; without a working one, MACHINE_SANDBOX=auto
# runs machines unsandboxed and refuses projects with config files (README, Security).
RUN apt-get update && apt-get install -y --no-install-recommends procps bubblewrap && rm -rf /var/lib/apt/lists/*
COPY --from=provisioner-contents /image ./
USER node
CMD ["node", "dist/apps/provisioner/src/main.js"]

# ================================================================ cleanup
# Cleanup: expiry jobs and the periodic sweep on the `cleanup` queue.

# ---- What this image holds: cleanup's build, the libs it requires and their packages (scripts/image-contents.ts).
FROM build AS cleanup-contents
RUN node -r @swc-node/register scripts/image-contents.ts cleanup --out /image

FROM service AS cleanup
# ps: the local provider finds the machines it destroys in the process table.
RUN apt-get update && apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/*
COPY --from=cleanup-contents /image ./
USER node
CMD ["node", "dist/apps/cleanup/src/main.js"]

# ================================================================ preview-container
# The program inside each preview machine (what Fly machines run): Vite on the
# project's files behind the session routing and proxy, on PORT 8080 of every address.

# ---- What this image holds: the container's build, the libs it requires, their packages and the
# templates' packages (Vite, its plugins, React, Vue, Svelte: projects import them from here).
FROM build AS preview-container-contents
RUN node -r @swc-node/register scripts/image-contents.ts preview-container --template-dependencies --out /image

FROM node:20-bookworm-slim AS preview-container
WORKDIR /app
COPY --from=preview-container-contents /image ./
RUN mkdir work && chown node:node work
# Vite in development mode: with NODE_ENV=production it turns React Fast Refresh off.
# Fly reaches a machine over IPv6 (HOST=::). Vite's bundler (rolldown) hands freed memory back at once.
ENV NODE_ENV=development PORT=8080 HOST=:: WORK_DIR=/app/work MIMALLOC_PURGE_DELAY=0
EXPOSE 8080
USER node
# Node's flags as PREVIEW_CONTAINER_NODE_FLAGS (libs/contracts/src/config.ts) has them.
CMD ["node", "--max-semi-space-size=2", "--initial-old-space-size=96", "dist/apps/preview-container/src/main.js"]
