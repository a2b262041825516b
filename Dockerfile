FROM python:3.11-slim
WORKDIR /app
# nft: the reference agent programs the node's nftables with it.
RUN apt-get update && apt-get install -y --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY allocator ./allocator
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
EXPOSE 8080
CMD ["allocator", "serve", "--host", "0.0.0.0", "--port", "8080"]
