import subprocess
import sys

from click.testing import CliRunner

from bptt.cli import cli


def test_help_lists_the_group():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Usage: bptt" in result.output


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "bptt", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("bptt, version")
