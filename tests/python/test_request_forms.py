"""Requests that are not POST + JSON + TC3-HMAC-SHA256 (reference §2.6) get one documented
refusal, `UnsupportedProtocol`, with a message naming what is required: GET, form-encoded
POSTs and the older HmacSHA1/HmacSHA256 ("v1") signature the SDKs still offer."""

import base64
import hashlib
import hmac
import random
import time
import urllib.parse

import pytest
import requests
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

NO_PROXY = {"http": None, "https": None}


def v1_form(keyward, method, params):
    """A form body signed the v1 way: sorted `k=v` (decoded values) after
    `POST<host>/?`, HMAC with the SecretKey, base64 (reference §2.6)."""
    params = dict(params)
    params.update({
        "Action": "GenerateRandom",
        "Version": "2019-01-18",
        "Region": keyward.region,
        "Timestamp": str(int(time.time())),
        "Nonce": str(random.randint(1, 2**31)),
        "SecretId": keyward.secret_id,
        "SignatureMethod": method,
        "RequestClient": "SDK_PYTHON_3.1.195",
    })
    to_sign = f"POST{keyward.host}/?" + "&".join(f"{k}={params[k]}" for k in sorted(params))
    digest = hashlib.sha1 if method == "HmacSHA1" else hashlib.sha256
    params["Signature"] = base64.b64encode(
        hmac.new(keyward.secret_key.encode(), to_sign.encode(), digest).digest()).decode()
    return urllib.parse.urlencode(params)


def check_refusal(resp):
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("Content-Type") == "application/json"
    body = resp.json()["Response"]
    assert body["Error"]["Code"] == "UnsupportedProtocol", body
    assert "TC3-HMAC-SHA256" in body["Error"]["Message"], body
    assert "application/json" in body["Error"]["Message"], body
    assert body["RequestId"]


@pytest.mark.parametrize("method", ["HmacSHA256", "HmacSHA1"])
def test_v1_signed_form_post_is_refused(keyward, method):
    resp = requests.post(
        keyward.endpoint + "/",
        data=v1_form(keyward, method, {"NumberOfBytes": "16"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30, proxies=NO_PROXY)
    check_refusal(resp)


def test_multipart_post_is_refused(keyward):
    resp = requests.post(keyward.endpoint + "/", files={"NumberOfBytes": (None, "16")},
                         timeout=30, proxies=NO_PROXY)
    assert resp.request.headers["Content-Type"].startswith("multipart/form-data")
    check_refusal(resp)


def test_get_is_refused(keyward):
    resp = requests.get(keyward.endpoint + "/?Action=GenerateRandom&NumberOfBytes=16",
                        timeout=30, proxies=NO_PROXY)
    check_refusal(resp)


@pytest.mark.parametrize("sign_method,req_method", [
    ("HmacSHA256", "POST"), ("HmacSHA1", "POST"), ("TC3-HMAC-SHA256", "GET")])
def test_the_sdk_in_other_forms_gets_the_refusal(keyward, sign_method, req_method):
    """The official SDK configured for the v1 signature or GET raises the refusal's code."""
    hp = HttpProfile(protocol="http", endpoint=keyward.host, reqMethod=req_method)
    client = kms_client.KmsClient(
        credential.Credential(keyward.secret_id, keyward.secret_key), keyward.region,
        ClientProfile(httpProfile=hp, signMethod=sign_method))
    req = models.GenerateRandomRequest()
    req.NumberOfBytes = 16
    with pytest.raises(TencentCloudSDKException) as e:
        client.GenerateRandom(req)
    assert e.value.code == "UnsupportedProtocol", e.value
    assert "TC3-HMAC-SHA256" in e.value.message
