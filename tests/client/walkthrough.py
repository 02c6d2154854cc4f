"""The README's walk-through, with a Python client generated from the server's OpenAPI document
by openapi-python-client (no hand edits to the document or the client).

    python walkthrough.py <base-url> <admin-username> <admin-password> <client-parent-dir> <png>

The generated package `imageapi_client` must be in <client-parent-dir>. Exits non-zero (with
an assertion message) on any step that does not do what the README says.
"""

import base64
import sys
import time

base_url, admin_name, admin_password, client_dir, png_path = sys.argv[1:6]
sys.path.insert(0, client_dir)

from imageapi_client import AuthenticatedClient, Client  # noqa: E402
from imageapi_client.api.account import get_me  # noqa: E402
from imageapi_client.api.admin import admin_create_user  # noqa: E402
from imageapi_client.api.images import get_image, get_thumbnail, list_images, upload_image  # noqa: E402
from imageapi_client.api.links import create_link, get_public_link  # noqa: E402
from imageapi_client.models import CreateLink, CreateUser, UploadForm  # noqa: E402
from imageapi_client.types import File  # noqa: E402


def basic(username, password):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return AuthenticatedClient(base_url=base_url, token=token, prefix="Basic", raise_on_unexpected_status=True)


admin = basic(admin_name, admin_password)

# An admin creates a user on the Enterprise tier.
created = admin_create_user.sync_detailed(
    client=admin, body=CreateUser(username="walker", password="walk-through-pw", tier="enterprise")
)
assert created.status_code == 201, created
user = basic("walker", "walk-through-pw")
me = get_me.sync(client=user)
assert me.username == "walker" and me.tier.id == "enterprise", me

# Upload a PNG.
with open(png_path, "rb") as f:
    uploaded = upload_image.sync_detailed(
        client=user, body=UploadForm(image=File(payload=f, file_name="bird.png", mime_type="image/png"))
    )
assert uploaded.status_code == 201, uploaded
image = uploaded.parsed
with open(png_path, "rb") as f:
    header = f.read(24)
size = (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big"))  # IHDR
assert image.format_ == "png" and (image.width, image.height) == size, (image, size)

# List: the image is there, newest first.
page = list_images.sync(client=user)
assert [i.id for i in page.results] == [image.id], page

# Wait for the 200 px thumbnail, then fetch it.
deadline = time.monotonic() + 60
while True:
    detail = get_image.sync(id=image.id, client=user)
    states = {t.height: t.status for t in detail.thumbnails}
    if states.get(200) == "ready":
        break
    assert time.monotonic() < deadline, f"the thumbnail did not become ready: {states}"
    time.sleep(0.2)
thumbnail = get_thumbnail.sync_detailed(id=image.id, height=200, client=user)
assert thumbnail.status_code == 200, thumbnail.status_code
assert thumbnail.content[:2] == b"\xff\xd8" or thumbnail.content[:4] == b"\x89PNG", thumbnail.content[:8]

# An expiring link, fetched without credentials.
link = create_link.sync(id=image.id, client=user, body=CreateLink(expires_in=300))
assert link is not None and link.url, link
token = link.url.rsplit("/", 1)[1]
fetched = get_public_link.sync_detailed(token=token, client=Client(base_url=base_url))
assert fetched.status_code == 200, fetched.status_code
with open(png_path, "rb") as f:
    assert fetched.content == f.read(), "the link serves the original"
print("walk-through with the generated client: ok")
