# syntax=docker/dockerfile:1
# One image for the gateway and the four gRPC services; docker-compose.yml picks the entry point:
#   node gateway/dist/main.js | node services/{workflow,sync,export,health}/dist/main.js

# Same Node major in both stages (engines: >=20.19).
ARG NODE_VERSION=20

# ---- manifests: root + every workspace package.json, so the npm ci layer below is rebuilt only
# when a dependency changes (and a new workspace needs no edit here) ----
FROM node:${NODE_VERSION}-bookworm AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests && cp package-lock.json .npmrc /manifests/ \
 && find . -name package.json -not -path '*/node_modules/*' -exec cp --parents {} /manifests/ \;

# ---- build: install the dependencies (TypeScript and the @types it compiles against are among them),
# compile, then drop what only the compile needs ----
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /app
# .npmrc sets nodedir=/usr for a developer machine; this image keeps its Node headers under
# /usr/local (the env var beats the project .npmrc, so .npmrc stays as committed).
ENV npm_config_nodedir=/usr/local
COPY --from=manifests /manifests ./
# --omit=dev leaves the test tools out (and grpc-mock's native `grpc` build); --ignore-scripts skips
# dtrace-provider (optional for bunyan).
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts

COPY . .
RUN npx tsc -b && rm -rf node_modules/typescript node_modules/@types

# Gather only what runs, in the same layout: node_modules/@ptw/* are symlinks to the workspace
# folders, and libs/proto finds protos/ at ../../../protos from its dist. Workspaces are read from
# package.json so a new one is picked up; a workspace may carry its own nested node_modules.
RUN set -eu; mkdir -p /out; \
    cp -a package.json package-lock.json node_modules protos /out/; \
    for ws in $(node -p "require('./package.json').workspaces.join(' ')"); do \
      mkdir -p "/out/$ws"; \
      cp -a "$ws/package.json" "$ws/dist" "/out/$ws/"; \
      if [ -d "$ws/node_modules" ]; then cp -a "$ws/node_modules" "/out/$ws/"; fi; \
      rm -f "/out/$ws/dist/.tsbuildinfo"; \
    done; \
    cp -a gateway/admin /out/gateway/ && rm -f /out/gateway/admin/screenshot.png

# ---- runtime ----
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Code stays root-owned (read-only for the process); only the log folder is writable by `node`.
# A named volume mounted on /app/logs starts with this folder's ownership.
COPY --from=build /out /app
# Fonts the PDF export embeds for non-Latin scripts (Devanagari, Tamil, Arabic, CJK).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /app/logs && chown node:node /app/logs
USER node

# Gateway HTTP (also /metrics), then sync, workflow, export, health gRPC.
EXPOSE 8080 15051 15052 15053 15054
CMD ["node", "gateway/dist/main.js"]
