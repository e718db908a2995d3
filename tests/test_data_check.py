from simmm.data.check import DataReport
from simmm.task import DataReport as TaskDataReport


def test_one_report_type_for_tasks_and_data():
    assert TaskDataReport is DataReport


def test_missing_root_is_the_one_problem(tmp_path):
    root = tmp_path / "absent"
    report = DataReport.for_root("cityscapes", root, "ROOT/<split>")
    assert not report.ok
    assert report.problems == [f"dataset root {root} does not exist; expected the tree ROOT/<split>"]
    assert report.format() == (f"cityscapes root {root} (expected ROOT/<split>)\n"
                               f"  MISSING  root folder {root}\n"
                               "result: NOT OK")
    present = DataReport.for_root("cityscapes", tmp_path, "ROOT/<split>")
    assert present.ok and present.lines == [] and present.format().endswith("\nresult: OK")


def test_entries_sort_into_problems_and_warnings():
    report = DataReport("pairs")
    report.entry("OK", "3 pairs")
    report.entry("ERROR", "2 pairs, 1 broken", summary=True)  # a count line: shown, not counted
    report.entry("WARN", "no correspondences")
    report.entry("MISSING", "no pairs file")
    report.entry("ERROR", "line 3: day image missing")
    assert report.lines == ["OK       3 pairs", "ERROR    2 pairs, 1 broken", "WARN     no correspondences",
                            "MISSING  no pairs file", "ERROR    line 3: day image missing"]
    assert report.problems == ["no pairs file", "line 3: day image missing"]
    assert report.warnings == ["no correspondences"]


def test_add_nests_a_part_and_keeps_its_findings():
    part = DataReport("darkzurich root /d (expected /d/rgb_anon)", lines=["OK       val/night: 3 images"],
                      warnings=["no correspondences"])
    bad = DataReport("cityscapes root /c (expected /c/gtFine)", problems=["missing label x"],
                     lines=["ERROR    train: 2 images"])
    report = DataReport("segmentation data")
    report.add(part)
    assert report.ok and report.warnings == ["no correspondences"]
    report.add(bad)
    assert report.problems == ["missing label x"]
    assert report.format() == "\n".join([
        "segmentation data",
        "  darkzurich root /d (expected /d/rgb_anon)",
        "    OK       val/night: 3 images",
        "  result: OK",
        "  cityscapes root /c (expected /c/gtFine)",
        "    ERROR    train: 2 images",
        "  result: NOT OK",
        "result: NOT OK",
    ])
    assert str(report) == report.format()

