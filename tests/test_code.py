"""Code repositories as a source: real packages of this venv packed at test time as archives, checkouts and bare git
repositories (tests/codedata.py); languages, licences, skips, the code filters, secrets, hostile archives, and the
whole command with web pages beside the code."""

import json
import pathlib

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.common.schema import Document
from pipeline.output.stats import Funnel
from pipeline.sources import code as code_source
from pipeline.steps import code, process
from tests import codedata

DEBIAN_LICENSES = pathlib.Path("/usr/share/common-licenses")


def code_settings(**settings) -> code_source.Settings:
    return code_source.Settings(**settings)


def curate_repository(path, **settings) -> tuple[list[Document], Funnel, list]:
    """Every unit of one repository through the unit processor, without an engine."""
    source = code_source.Code("code", code_settings(repos=[str(path)], **settings))
    (source_input,) = source.inputs()
    units = source.plan(source_input)
    processor = process.UnitProcessor(source)
    funnel = Funnel()
    try:
        docs = [doc for unit in units for doc in processor.process(unit, funnel)]
    finally:
        processor.close()
    return docs, funnel, units


@pytest.mark.parametrize(
    ("path", "content", "language"),
    [
        ("src/app.py", b"", "python"),
        ("stubs/app.pyi", b"", "python"),
        ("include/vec.h", b"", "c"),
        ("src/vec.cpp", b"", "cpp"),
        ("web/App.tsx", b"", "typescript"),
        ("README.md", b"", "markdown"),
        ("Makefile", b"", "makefile"),
        ("bin/tool", b"#!/usr/bin/env python3\nprint(1)\n", "python"),
        ("bin/run", b"#!/bin/bash\necho hi\n", "shell"),
        ("LICENSE", b"MIT License", None),
        ("notes.txt", b"notes", None),
        ("logo.png", b"\x89PNG", None),
    ],
)
def test_a_file_s_language_comes_from_its_name_extension_or_shebang(path, content, language):
    assert code.language_of(path, content) == language


@pytest.mark.parametrize(
    ("path", "size", "reason"),
    [
        ("pip/_vendor/packaging/version.py", 10, "vendored"),
        ("web/node_modules/left-pad/index.js", 10, "vendored"),
        ("Cargo.lock", 10, "lock_file"),
        ("package-lock.json", 10, "lock_file"),
        ("data/model.py", 2_000_000, "too_large"),
        ("src/vendor.py", 10, None),  # a file named vendor is not a vendored folder
    ],
)
def test_vendored_lock_and_large_files_are_skipped_by_path_and_size(path, size, reason):
    assert code.skip_reason(path, size) == reason


def test_licences_of_real_packages_are_named_by_spdx_id_and_judged():
    mit = codedata.package_files("tzlocal", "tzlocal")["LICENSE.txt"].decode()
    apache = codedata.package_files("absl-py", "absl", limit=1)["LICENSE"].decode()
    tld = codedata.package_files("tld", "tld", limit=1)
    assert code.licenses_of([mit]) == ["MIT"] and code.licenses_of([apache]) == ["Apache-2.0"]
    (tld_licences) = code.licenses_of([tld[name].decode() for name in ("LICENSE_GPL2.0.txt", "LICENSE_LGPL_2.1.txt")])
    assert [name.split("-")[0] for name in tld_licences] == ["GPL", "LGPL"]
    permissive = code.allowed_licenses(["permissive"])
    assert code.license_verdict(["MIT"], permissive) is None
    assert code.license_verdict(["Apache-2.0", "MIT"], permissive) is None
    assert code.license_verdict(tld_licences, permissive) == "license.not_allowed"
    assert code.license_verdict(["MIT", *tld_licences], permissive) == "license.not_allowed"  # all must be allowed
    assert code.license_verdict(tld_licences, code.allowed_licenses(tld_licences)) is None
    assert code.license_verdict([], permissive) == "license.none"
    assert code.license_verdict([], code.allowed_licenses(["permissive", "none"])) is None
    assert code.license_verdict(tld_licences, code.allowed_licenses(["any"])) is None
    if DEBIAN_LICENSES.is_dir():  # Debian's copy of the GPL, as a repository's COPYING file carries it
        assert code.licenses_of([(DEBIAN_LICENSES / "GPL-3").read_text()]) == ["GPL-3.0-only"]


def test_pip_s_vendored_dependencies_are_skipped_and_the_standard_library_reads_as_python_s_licence(tmp_path):
    import sysconfig

    pip = codedata.package_files("pip", "pip")
    chosen = {
        p: d for p, d in pip.items() if "/" not in p or p.startswith(("pip/_internal/utils/", "pip/_vendor/idna/"))
    }
    vendored = [p for p in chosen if p.startswith("pip/_vendor/")]
    docs, funnel, units = curate_repository(codedata.write_tar(tmp_path / "pip.tar.gz", chosen, "pip-26"))
    assert units[0].licenses == ("MIT",) and vendored and funnel.records_skipped["vendored"] == len(vendored)
    assert docs and all(doc.path.startswith("pip/_internal/utils/") for doc in docs)
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    json_package = {f"json/{p.name}": p.read_bytes() for p in sorted((stdlib / "json").glob("*.py"))}
    json_package["LICENSE.txt"] = (stdlib / "LICENSE.txt").read_bytes()  # CPython's, with its history
    docs, _, units = curate_repository(codedata.write_checkout(tmp_path / "cpython-json", json_package))
    assert units[0].licenses == ("Python-2.0.1",) and len(docs) == len(json_package) - 1


@pytest.fixture(scope="module")
def tzlocal_forms(tmp_path_factory):
    """tzlocal (MIT) with the extras, as a checkout with a commit, a bare clone, a tarball and a zip of that commit."""
    root = tmp_path_factory.mktemp("forms")
    files = codedata.with_extras(codedata.package_files("tzlocal", "tzlocal"))
    checkout = codedata.write_checkout(root / "tzlocal", files, link="config/alias.py")
    commit = codedata.commit_checkout(checkout)
    return (
        {
            "checkout": checkout,
            "git": codedata.bare_clone(checkout, root / "tzlocal.git"),
            "tar": codedata.write_tar(
                root / "tzlocal-main.tar.gz", files, f"tzlocal-{commit[:7]}", commit, "config/alias.py"
            ),
            "zip": codedata.write_zip(root / "tzlocal-main.zip", files, "tzlocal-main", commit, "config/alias.py"),
        },
        commit,
        files,
    )


def test_a_checkout_a_bare_repository_a_tarball_and_a_zip_give_the_same_documents(tzlocal_forms):
    forms, commit, files = tzlocal_forms
    results = {kind: curate_repository(path) for kind, path in forms.items()}
    generated = "tzlocal/windows_tz.py"  # "This file is autogenerated by the update_windows_mapping.py script"
    expected_code = sorted(p for p in files if p.startswith("tzlocal/") and p.endswith(".py") and p != generated)
    for kind, (docs, funnel, units) in results.items():
        by_path = {doc.path: doc for doc in docs}
        assert sorted(p for p in by_path if p.startswith("tzlocal/")) == expected_code, kind
        for path in expected_code:
            assert by_path[path].text == files[path].decode(), (kind, path)
        doc = by_path["tzlocal/unix.py"]
        assert (doc.language, doc.license, doc.revision) == ("python", "MIT", commit), kind
        assert doc.repository == pathlib.Path(forms[kind]).name.split(".")[0]  # archive suffix, .git: off
        assert doc.id == f"code/{doc.repository}/tzlocal/unix.py" and doc.language_label is None
        assert funnel.records_skipped == {
            "vendored": 2, "lock_file": 1, "link": 1, "binary": 1,
            "not_code": 3,  # notes.txt, LICENSE.txt, py.typed
        }, kind  # fmt: skip
        assert funnel.dropped == {"code_generated.minified": 1, "code_generated.autogenerated": 1}, kind
        assert funnel.edits == {"secrets.AWSKeyDetector": 1, "secrets.GitHubTokenDetector": 1}, kind
        settings = by_path["config/settings.py"].text
        assert codedata.AWS_KEY not in settings and codedata.GITHUB_TOKEN not in settings
        assert settings.count(code.SECRET_PLACEHOLDER) == 2 and 'REGION = "eu-west-1"' in settings
        assert funnel.records_read == len(files) + 1 and funnel.problems() == []  # every file, and the link
        assert len(units) == 1 and units[0].revision == commit


def test_archives_are_read_over_http_and_a_dropped_connection_resumes(tzlocal_forms, http_server):
    forms, _, _ = tzlocal_forms
    http_server.drop_after["/r/tzlocal-main.tar.gz"] = 3000  # cut mid-stream once: the reader resumes by range
    for kind in ("tar", "zip"):
        http_server.files[f"/r/{forms[kind].name}"] = forms[kind].read_bytes()
        remote, funnel, _ = curate_repository(f"{http_server.url}/r/{forms[kind].name}")
        local = curate_repository(forms[kind])[0]
        assert [(d.id, d.text, d.revision, d.license) for d in remote] == [
            (d.id, d.text, d.revision, d.license) for d in local
        ]
        assert remote and funnel.errors == []
    assert any(http_server.requests_for("/r/tzlocal-main.tar.gz"))  # a Range request after the cut


def test_a_bare_repository_served_over_http_is_fetched_and_read_as_on_disk(tzlocal_forms, http_server, tmp_path):
    from dulwich import porcelain

    forms, commit, _ = tzlocal_forms
    served = codedata.copy_tree(forms["git"], tmp_path / "tzlocal.git")
    porcelain.update_server_info(str(served))  # a dumb HTTP server's index of refs and packs
    for file in sorted(p for p in served.rglob("*") if p.is_file()):
        http_server.files[f"/git/tzlocal.git/{file.relative_to(served)}"] = file.read_bytes()
    refs = http_server.files["/git/tzlocal.git/info/refs"]
    http_server.files["/git/tzlocal.git/info/refs?service=git-upload-pack"] = refs  # a static server ignores the query
    remote, funnel, units = curate_repository(f"{http_server.url}/git/tzlocal.git")
    local = curate_repository(forms["git"])[0]
    assert [(d.id, d.text, d.revision) for d in remote] == [(d.id, d.text, d.revision) for d in local]
    assert units[0].revision == commit and funnel.errors == []
    with pytest.raises(OSError, match="cannot fetch the repository"):  # the input's error, the run goes on
        curate_repository(f"{http_server.url}/git/missing.git")


def test_a_unit_s_key_is_stable_and_changes_with_the_repository(tzlocal_forms, tmp_path):
    """Resume reuses a committed unit only while the repository is the same: a bare repository's commit, an archive's
    recorded commit, a checkout's commit and files (an edit not yet committed counts)."""
    forms, _, _ = tzlocal_forms
    checkout = codedata.copy_tree(forms["checkout"], tmp_path / "tzlocal")

    def keys(path):
        source = code_source.Code("code", code_settings(repos=[str(path)]))
        return [source.unit_key(unit) for unit in source.plan(source.inputs()[0])]

    for kind in ("git", "tar", "zip"):
        assert keys(forms[kind]) == keys(forms[kind])
    before = keys(checkout)
    assert keys(checkout) == before
    (checkout / "tzlocal" / "utils.py").write_text("# edited, not committed\n")
    assert keys(checkout) != before


def test_a_code_file_takes_no_part_in_boilerplate_line_removal():
    from pipeline.dedup import lines

    text = "import os\nimport sys\n\n\ndef main():\n    return 0\n"
    assert lines.document_line_hashes(Document(id="a", text=text, source="code", path="a.py")) == set()
    assert len(lines.document_line_hashes(Document(id="b", text=text, source="books"))) == 4


def test_a_bare_repository_is_read_at_the_revision_asked_and_secrets_stay_when_switched_off(tzlocal_forms, tmp_path):
    from dulwich import porcelain

    forms, first, files = tzlocal_forms
    checkout = codedata.copy_tree(forms["checkout"], tmp_path / "tzlocal")
    (checkout / "tzlocal" / "utils.py").write_text("def changed():\n    return 'second commit'\n")
    with porcelain.open_repo_closing(str(checkout)) as repo:
        porcelain.add(repo, [str(checkout / "tzlocal" / "utils.py")])
        second = porcelain.commit(repo, message=b"edit", author=b"T <t@example.org>", committer=b"T <t@example.org>")
    bare = codedata.bare_clone(checkout, tmp_path / "tzlocal.git")

    def utils(**settings):
        docs, _, units = curate_repository(bare, **settings)
        return next(d.text for d in docs if d.path == "tzlocal/utils.py"), units[0].revision

    assert utils() == ("def changed():\n    return 'second commit'\n", second.decode())
    assert utils(revision=first) == (files["tzlocal/utils.py"].decode(), first)
    with pytest.raises(ValueError, match="no revision 'v9.9'"):  # the input's error, named
        utils(revision="v9.9")
    docs, funnel, _ = curate_repository(bare, secrets=False)
    assert codedata.AWS_KEY in next(d.text for d in docs if d.path == "config/settings.py")
    assert not any(name.startswith("secrets.") for name in funnel.edits)


def test_a_large_repository_is_read_in_parts_that_add_up_to_the_whole(tzlocal_forms):
    forms, _, _ = tzlocal_forms
    whole, whole_funnel, _ = curate_repository(forms["zip"])
    parts, funnel, units = curate_repository(forms["zip"], max_unit_bytes=20_000)
    assert len(units) > 2 and len({unit.part for unit in units}) == len(units)
    assert sorted(doc.id for doc in parts) == sorted(doc.id for doc in whole)
    assert funnel.records_skipped == whole_funnel.records_skipped and funnel.input_files == 1
    source = code_source.Code("code", code_settings(repos=[str(forms["zip"])]))
    assert len({source.unit_key(unit) for unit in units}) == len(units)


def test_a_repository_whose_licence_is_not_allowed_is_counted_file_by_file_and_read_when_allowed(tmp_path):
    files = codedata.package_files("pathspec", "pathspec", limit=6)  # MPL-2.0
    archive = codedata.write_tar(tmp_path / "pathspec.tar.gz", files, "pathspec-1")
    docs, funnel, units = curate_repository(archive)
    assert docs == [] and units[0].licenses == ("MPL-2.0",)
    assert funnel.records_skipped == {"license.not_allowed": len(files)}
    docs, funnel, _ = curate_repository(archive, licenses=["permissive", "MPL-2.0"])
    assert len(docs) == 5 and {doc.license for doc in docs} == {"MPL-2.0"}
    assert funnel.records_skipped == {"not_code": 1, "no_text": 1}  # LICENSE, the empty _backends/__init__.py
    unlicensed = {path: data for path, data in files.items() if "/" in path}
    archive = codedata.write_zip(tmp_path / "nolicence.zip", unlicensed, "x")
    assert curate_repository(archive)[1].records_skipped == {"license.none": 6}
    assert len(curate_repository(archive, licenses=["none"])[0]) == 5


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_hostile_archives_cost_their_traps_counted_and_nothing_is_written(kind, tmp_path):
    limit = 50_000
    (tmp_path / "work").mkdir()
    if kind == "tar":
        archive = codedata.hostile_tar(tmp_path / "work" / "evil.tar.gz", limit)
    else:
        archive = codedata.hostile_zip(tmp_path / "work" / "evil.zip", limit)
    before = sorted(p for p in tmp_path.rglob("*"))
    docs, funnel, _ = curate_repository(archive, max_file_bytes=limit, licenses=["any"])
    assert [doc.path for doc in docs] == ["ok.py"] and docs[0].text == "def ok():\n    return 'fine'\n"
    expected = {"unsafe_path": 2, "link": 1}
    if kind == "tar":
        expected.update({"link": 2, "special": 1, "too_large": 1})
    else:
        expected.update({"encrypted": 1, "unreadable_member": 1})  # the bomb's lie: read no further than it says
    assert funnel.records_skipped == expected
    assert sorted(p for p in tmp_path.rglob("*")) == before and not (tmp_path.parent / "escaped.py").exists()


def test_the_code_filters_drop_by_rule_with_the_published_thresholds():
    def reason(text, path="src/x.py", language="python", **settings):
        doc = Document(id="x", text=text, source="code", language=language, path=path, measures={})
        from pipeline.steps import filters

        return filters.apply_filters(filters.build_filters(code.CODE_FILTERS, settings), doc), doc

    normal = "def f(x):\n    return x + 1\n"
    assert reason(normal)[0] is None
    long_line = normal * 20 + "y = '" + "a" * 1001 + "'\n"
    assert reason(long_line)[0] == "code_lines.long_line"
    assert reason("x = [" + ", ".join(["1"] * 60) + "]\n")[0] == "code_lines.long_mean_line"
    assert reason(normal + ("=" * 60 + "\n") * 20)[0] == "code_alphanum.low_alphanum"
    generated = codedata.package_files("protobuf", "google", limit=None)["google/protobuf/timestamp_pb2.py"]
    assert reason(generated.decode())[0] == "code_generated.autogenerated"  # protoc's own header
    assert reason(normal, path="static/app.min.js", language="javascript")[0] == "code_generated.minified"
    assert reason('{"a": 1}', path="x.json", language="json")[0] == "code_data.data_too_short"
    large = "{\n" + "".join(f'  "key{n}": "value",\n' for n in range(400)) + '  "end": 0\n}\n'
    assert reason(large, path="x.json", language="json")[0] == "code_data.data_too_long"
    kept, doc = reason('{"name": "lmforge", "version": "1.0", "license": "MIT"}\n', path="x.json", language="json")
    assert kept is None and doc.measures["code_alphanum.fraction"] > 0.25
    assert reason(long_line, code_lines={"max_line_length": None})[0] is None  # a rule switched off


def test_secrets_are_redacted_and_a_file_without_any_is_left_byte_for_byte():
    step = code.SecretsStep()
    real = codedata.package_files("tzlocal", "tzlocal")["tzlocal/unix.py"].decode()
    doc = Document(id="a", text=real, source="code")
    step(doc)
    assert doc.text is real and not step.changes
    private_key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"
    slack = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    doc = Document(id="b", text=f"{real}\nKEY = '''{private_key}'''\nHOOK = '{slack}'\n{codedata.SECRET_FILE}",
                   source="code")  # fmt: skip
    step(doc)
    assert "PRIVATE KEY" not in doc.text and "MIIEow" not in doc.text and slack not in doc.text
    assert codedata.AWS_KEY not in doc.text and doc.text.startswith(real)
    assert step.changes == {
        "secrets.PrivateKeyDetector": 1, "secrets.SlackDetector": 1, "secrets.AWSKeyDetector": 1,
        "secrets.GitHubTokenDetector": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="no detect-secrets plugin 'NoSuchDetector'"):
        code.SecretsStep(["NoSuchDetector"])


def test_code_curates_beside_web_pages_into_one_funnel_with_dedup_across_repositories(tmp_path, tzlocal_forms):
    """`python -m pipeline curate` on Beam: a crawl and three repositories (one under MPL-2.0, one copying a file of
    another outside any vendor folder). The copy is removed across repositories, the stats add up, the shards carry
    the code columns and the web's rows leave them empty, and the report counts languages."""
    from pipeline.common import synthetic

    forms, commit, files = tzlocal_forms
    synthetic.write_sample_warc(str(tmp_path / "crawl.warc.gz"), pages=30, seed=3)
    copier = {"LICENSE": files["LICENSE.txt"], "lib/utils_copy.py": files["tzlocal/utils.py"],
              "lib/own.py": b"def own(value):\n    return value * 2 + 1\n"}  # fmt: skip
    repos = tmp_path / "repos"
    repos.mkdir()
    codedata.write_tar(repos / "copier.tar.gz", copier, "copier-main")
    codedata.write_tar(repos / "pathspec.tar.gz", codedata.package_files("pathspec", "pathspec", limit=3), "p")
    codedata.write_zip(repos / "tzlocal.zip", files, "tzlocal-main", commit)
    out = tmp_path / "out"
    status = cli.main([
        "curate", "--warcs", str(tmp_path / "crawl.warc.gz"), "--repos", str(repos / "*"), "--languages", "en",
        "--languages", "code=python,javascript", "--output", str(out), "--direct_num_workers=1",
        "--direct_running_mode=in_memory",
    ])  # fmt: skip
    assert status == 0
    stats = json.loads((out / "stats.json").read_text())
    rows = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pylist()
    code_rows = [row for row in rows if row["source"] == "code"]
    web_rows = [row for row in rows if row["source"] == "commoncrawl"]
    assert web_rows and all(row["repository"] is row["path"] is row["license"] is None for row in web_rows)
    paths = {(row["repository"], row["path"]) for row in code_rows}
    assert ("copier", "lib/own.py") in paths and ("tzlocal", "tzlocal/unix.py") in paths
    copies = {("copier", "lib/utils_copy.py"), ("tzlocal", "tzlocal/utils.py")}
    assert len(paths & copies) == 1  # one copy survives the exact dedup, across repositories
    assert not any(repository == "pathspec" for repository, _ in paths)
    assert {row["language"] for row in code_rows} == {"python"}  # the .js files: vendored, minified
    assert Funnel.from_json(stats).problems() == []
    skipped = stats["records_skipped"]
    assert skipped["license.not_allowed"] == 4 and skipped["vendored"] == 2 and skipped["binary"] == 1
    assert stats["dropped"]["code_generated.minified"] == 1
    groups = pq.read_table(sorted((out / "duplicates").glob("part-*"))).to_pylist()
    code_groups = [g for g in groups if g["kept_id"].startswith("code/")]
    ids = {"code/copier/lib/utils_copy.py", "code/tzlocal/tzlocal/utils.py"}
    assert [(g["kind"], {g["kept_id"], *g["removed_ids"]}) for g in code_groups] == [("exact", ids)]
    assert stats["edits"]["secrets.AWSKeyDetector"] == 1
    report = (out / "report.html").read_text()
    assert "python" in report and "code_generated.minified" in report


def test_the_tokenizer_keeps_code_s_whitespace_and_round_trips_every_file(tmp_path):
    """Trained on real code (the encoder's fast and reference paths alike): indentation runs become tokens of their
    own, and every file of a repository it never saw decodes to its exact bytes, tabs and trailing spaces included."""
    from tokenizer import corpus as token_corpus, train as token_train
    from tokenizer.encoding import Encoder

    training = codedata.package_files("absl-py", "absl", limit=40)
    unseen = codedata.package_files("tzlocal", "tzlocal")
    texts = [data.decode() for path, data in training.items() if path.endswith(".py")]
    tricky = "def f():\n\tif x:  \n\t\treturn 1   \n        pass\r\n\n\n"
    with open(tmp_path / "code.jsonl", "w") as handle:
        handle.writelines(json.dumps({"text": text}) + "\n" for text in texts)
    config = token_train.TrainConfig(vocab_size=600)
    token_train.train(token_corpus.CorpusSpec([str(tmp_path / "code.jsonl")]), config, str(tmp_path / "tok"))
    encoder = Encoder(str(tmp_path / "tok"))
    files = [data.decode() for path, data in unseen.items() if path.endswith(".py")] + [tricky]
    assert encoder.agrees(files)
    for text, ids in zip(files, encoder.encode(files), strict=True):
        assert encoder.decode(ids) == text
    spaces = [token for token in encoder.hf.get_vocab() if set(token) == {"Ġ"}]  # byte-level BPE writes " " as Ġ
    assert any(len(token) >= 4 for token in spaces)  # an indentation level is one token
