# walwire: one image for both daemons and the demo writer.
#   docker build -t walwire .
#   docker run walwire primary --db app=/data/app.db --data-dir /data/walwire
#   docker run walwire replica --primary ws://primary:7400/v1/replicate --namespaces app
# The first argument picks the program: primary | replica | writer; the rest
# are its flags (every flag also has a WALWIRE_* variable; see docs/operations.md).

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages/protocol/package.json packages/protocol/
COPY packages/runtime/package.json packages/runtime/
COPY packages/primary/package.json packages/primary/
COPY packages/replica/package.json packages/replica/
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY packages packages
RUN npx tsc -b packages/primary packages/replica && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    WALWIRE_HOST=0.0.0.0 \
    WALWIRE_LOG_PRETTY=false
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/packages packages
COPY package.json ./
COPY scripts/writer.mjs scripts/docker-entrypoint.sh scripts/
# Named volumes take the ownership of their mount point in the image.
RUN chmod +x scripts/docker-entrypoint.sh && mkdir -p /data/db /data/walwire && chown -R node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7400 7401
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
CMD ["primary"]
