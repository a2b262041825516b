"""/docs works without internet: the page and every asset it loads come from the server itself."""

import re

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_and_their_assets_are_served_by_the_server(
    client: httpx.AsyncClient, page: str
) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    referenced = re.findall(
        r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html.text
    )
    urls = {a or b for a, b in referenced}
    assert "/openapi.json" in urls
    assert len(urls) >= 3, urls  # the script, the style sheet (or the font-free redoc) and the icon
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
