"""Reading images out of a request: one (multipart field `image`, or the raw body) or many
(repeated multipart fields `images`), with the form parser's limits turned into InputErrors."""
from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.decode import InputError


async def read_one_image(request: Request) -> bytes:
    if _is_multipart(request):
        form = await _parse_form(request, max_files=4)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InputError(422, "missing_image", "multipart request without a file field named `image`")
        return await upload.read()
    return await request.body()


async def read_many_images(request: Request, limit: int) -> list[UploadFile]:
    if not _is_multipart(request):
        raise InputError(422, "not_multipart", "POST /v1/scan takes multipart/form-data with repeated `images` fields")
    form = await _parse_form(request, max_files=limit + 1)
    uploads = [u for u in form.getlist("images") if isinstance(u, UploadFile)]
    if not uploads:
        raise InputError(422, "missing_images", "multipart request without file fields named `images`")
    if len(uploads) > limit:
        raise InputError(413, "too_many_images", f"{len(uploads)} images in one request; the limit is {limit}")
    return uploads


async def _parse_form(request: Request, max_files: int):
    try:
        return await request.form(max_files=max_files, max_fields=64)
    except StarletteHTTPException as exc:  # python-multipart's limits and syntax errors
        if "Too many files" in str(exc.detail):
            raise InputError(413, "too_many_images", f"too many files; the limit is {max_files - 1}") from None
        raise InputError(422, "malformed_multipart", f"cannot parse the multipart body: {exc.detail}") from None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")
