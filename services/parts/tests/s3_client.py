"""boto3 against the parts S3 API (unsigned, path style): run by tests/s3.rs.

Usage: python3 s3_client.py ENDPOINT. Exits non-zero on the first failed check.
"""
import os
import sys

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)


def expect_error(code, call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"{call.__name__}: expected {code}, got {got}"
        return
    raise AssertionError(f"{call.__name__} {kwargs.get('Key', '')}: expected {code}, got success")


B = "photos"
expect_error("NoSuchBucket", s3.put_object, Bucket="nobucket", Key="k", Body=b"x")
expect_error("InvalidBucketName", s3.create_bucket, Bucket="No_Such")
s3.create_bucket(Bucket=B)
expect_error("BucketAlreadyOwnedByYou", s3.create_bucket, Bucket=B)
assert B in [b["Name"] for b in s3.list_buckets()["Buckets"]]
s3.head_bucket(Bucket=B)

for size in [0, 1, 5, 6, 7, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (5 << 20) + 3]:
    data = os.urandom(size)
    put = s3.put_object(Bucket=B, Key=f"sizes/{size}", Body=data)
    got = s3.get_object(Bucket=B, Key=f"sizes/{size}")
    assert got["Body"].read() == data and got["ContentLength"] == size, size
    head = s3.head_object(Bucket=B, Key=f"sizes/{size}")
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"], size

data = os.urandom(3 << 20)
s3.put_object(Bucket=B, Key="big", Body=data)
part = s3.get_object(Bucket=B, Key="big", Range="bytes=1000-2999999")
assert part["Body"].read() == data[1000:3000000]
assert part["ContentRange"] == f"bytes 1000-2999999/{len(data)}", part["ContentRange"]
expect_error("InvalidRange", s3.get_object, Bucket=B, Key="big", Range="bytes=99999999-")

for key in ["a b/c+d", "ünï/cödé", "x&y<z>'\"", "tricky%2Fslash", "dir/a", "dir/b", "dir/sub/1", "dir/sub/2", "dir/z"]:
    s3.put_object(Bucket=B, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=B, Key=key)["Body"].read() == key.encode(), key

listed = s3.list_objects_v2(Bucket=B, Prefix="dir/", Delimiter="/")
assert [c["Key"] for c in listed["Contents"]] == ["dir/a", "dir/b", "dir/z"], listed
assert listed["CommonPrefixes"] == [{"Prefix": "dir/sub/"}], listed
assert listed["KeyCount"] == 4 and not listed["IsTruncated"]

everything = sorted(
    ["a b/c+d", "ünï/cödé", "x&y<z>'\"", "tricky%2Fslash", "dir/a", "dir/b", "dir/sub/1", "dir/sub/2", "dir/z", "big"]
    + [f"sizes/{n}" for n in [0, 1, 5, 6, 7, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (5 << 20) + 3]],
    key=lambda k: k.encode(),
)
pages, keys = 0, []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, PaginationConfig={"PageSize": 3}):
    pages += 1
    keys += [c["Key"] for c in page.get("Contents", [])]
assert keys == everything, (keys, everything)
assert pages == (len(everything) + 2) // 3, pages
v1 = s3.list_objects(Bucket=B, Prefix="dir/", MaxKeys=2)
assert [c["Key"] for c in v1["Contents"]] == ["dir/a", "dir/b"] and v1["IsTruncated"]

expect_error("BadDigest", s3.put_object, Bucket=B, Key="bad", Body=b"hello", ChecksumCRC32="AAAAAA==")
expect_error("NoSuchKey", s3.get_object, Bucket=B, Key="bad")
expect_error("NotImplemented", s3.create_multipart_upload, Bucket=B, Key="mp")

s3.delete_object(Bucket=B, Key="dir/a")
expect_error("NoSuchKey", s3.get_object, Bucket=B, Key="dir/a")
expect_error("404", s3.head_object, Bucket=B, Key="dir/a")
s3.delete_object(Bucket=B, Key="never-there")
expect_error("BucketNotEmpty", s3.delete_bucket, Bucket=B)

s3.create_bucket(Bucket="scratch")
s3.put_object(Bucket="scratch", Key="k", Body=b"v")
s3.delete_object(Bucket="scratch", Key="k")
s3.delete_bucket(Bucket="scratch")
expect_error("404", s3.head_bucket, Bucket="scratch")
print("s3 client checks passed with boto3", boto3.__version__)
