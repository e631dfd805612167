"""What asset pages show besides numbers: frames as Markdown previews and tables, rates as percentages."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from campaign_pipeline.core.campaign_keys import campaign_id_from_key

PREVIEW_ROWS = 10


def preview_table(
    frame: pd.DataFrame,
    rows: int | None = PREVIEW_ROWS,
    columns: list[str] | None = None,
    max_chars: int | None = None,
) -> dg.MarkdownMetadataValue:
    """The first `rows` rows (all when None) of `columns` as a Markdown table; cells cut to `max_chars`."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = frame[columns] if columns else frame
    if rows is not None:
        shown = shown.head(rows)
    cells = shown.astype(str)
    if max_chars is not None:
        cells = cells.apply(lambda column: column.str.slice(0, max_chars))
    return dg.MetadataValue.md(cells.to_markdown(index=False))


def frame_table(frame: pd.DataFrame, rows: int | None = PREVIEW_ROWS, max_chars: int = 200) -> dg.TableMetadataValue:
    """The first `rows` rows (all when None) as a Dagster table: any cell text renders, `|` included."""
    shown = frame if rows is None else frame.head(rows)
    columns = [
        dg.TableColumn(str(name), "int" if pd.api.types.is_integer_dtype(shown[name].dtype) else "string")
        for name in shown.columns
    ]
    records = [
        dg.TableRecord(
            {
                str(name): (int(value) if column.type == "int" else _cell(value, max_chars))
                for (name, value), column in zip(record.items(), columns, strict=True)
            }
        )
        for record in shown.to_dict("records")
    ]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def _cell(value: object, max_chars: int) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[arg-type]
        return None
    return str(value)[:max_chars]


def percent(rate: float) -> str:
    """A rate (0.298) as people read it: "29.8%"."""
    return f"{rate:.1%}"


def partition_check_results(
    context: dg.AssetExecutionContext, check_name: str, results: Mapping[str, dg.AssetCheckResult]
) -> Iterator[Any]:
    """Yield an asset's check ``results`` (partition key -> result) each on its own partition, batched runs too.

    Dagster records an ``AssetCheckResult`` on the run's partition, and a run over a range of partitions has none
    (the UI shows "Partition —"); so a batched run yields the check's output once and one evaluation per partition,
    each pointing at that partition's materialization. Yield it after the asset's Output.
    """
    if context.has_partition_key and len(results) == 1:
        yield from results.values()
        return
    check_key = dg.AssetCheckKey(context.asset_key, check_name)
    spec = context.assets_def.get_spec_for_check_key(check_key)
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
    for partition_key, result in results.items():
        latest = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[partition_key]), limit=1
        ).records
        target = (
            AssetCheckEvaluationTargetMaterializationData(
                run_id=latest[0].run_id, storage_id=latest[0].storage_id, timestamp=latest[0].timestamp
            )
            if latest
            else None
        )
        yield dg.AssetCheckEvaluation(
            asset_key=context.asset_key,
            check_name=check_name,
            passed=result.passed,
            metadata=result.metadata,
            target_materialization_data=target,
            severity=result.severity,
            description=result.description,
            blocking=spec.blocking,
            partition=partition_key,
        )


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value (``frame_table``) as dicts: what a reader of the event log gets back."""
    if not isinstance(value, dg.TableMetadataValue):
        raise TypeError(f"expected table metadata, got {type(value).__name__}")
    return [dict(record.data) for record in value.records]


def counts_table(counts: Mapping[str, int], label: str) -> dg.TableMetadataValue:
    """Counts by a label (statuses, actions, reasons) as a two-column table, largest first."""
    frame = pd.DataFrame({label: [str(key) for key in counts], "count": [int(value) for value in counts.values()]})
    return frame_table(frame.sort_values("count", ascending=False, kind="stable"), rows=None)


RATE_COLUMNS = ("open_rate", "click_rate", "click_to_open_rate")


def with_percentages(frame: pd.DataFrame, columns: tuple[str, ...] = RATE_COLUMNS) -> pd.DataFrame:
    """A copy for display with rate columns (0.298) written as percentages ("29.8%")."""
    shown = frame.copy()
    for name in columns:
        if name in shown.columns:
            shown[name] = shown[name].map(lambda rate: percent(float(rate)) if pd.notna(rate) else "")
    return shown


# Said next to API call counts on a partition of a batched run: the calls were made once for all its campaigns.
RUN_WIDE_CALLS = "the whole run's: one batch of calls serves all its campaigns"


def metadata_per_campaign(
    context: dg.AssetExecutionContext,
    build: Callable[[list[str]], dict[str, Any]],
    run_wide: Mapping[str, Any] | None = None,
    asset_key: dg.AssetKey | None = None,
) -> dict[str, Any]:
    """The metadata of a per-campaign asset: ``build(campaign_ids)`` says what those campaigns' rows show.

    A run of one partition gets ``build`` of its campaign (plus ``run_wide``) as the Output's metadata. A batched
    run (several campaign partitions) would otherwise record the whole batch's numbers on every partition: each
    partition gets ``build`` of its own campaign instead, and the Output's metadata (recorded on every partition)
    holds only ``run_wide`` and how many campaigns the run had. ``asset_key`` names the asset of a multi-asset.
    """
    keys = list(context.partition_keys)
    campaigns = {key: campaign_id_from_key(key) for key in keys}
    if len(keys) <= 1:
        return {**(run_wide or {}), **build(list(campaigns.values()))}
    for key, campaign_id in campaigns.items():
        context.add_asset_metadata(build([campaign_id]), asset_key=asset_key, partition_key=key)
    return {**(run_wide or {}), "campaigns_in_run": dg.MetadataValue.int(len(keys))}


def metadata_per_partition(
    context: dg.AssetExecutionContext,
    frame: pd.DataFrame,
    build: Callable[[pd.DataFrame], dict[str, Any]],
    column: str = "campaign_id",
    run_wide: Mapping[str, Any] | None = None,
    asset_key: dg.AssetKey | None = None,
) -> dict[str, Any]:
    """``metadata_per_campaign`` for an asset whose frame has a campaign column: ``build`` gets that campaign's rows
    (a run of one partition: the whole frame)."""
    if len(context.partition_keys) <= 1:
        return {**(run_wide or {}), **build(frame)}
    return metadata_per_campaign(
        context,
        lambda campaign_ids: build(frame[frame[column].isin(campaign_ids)].reset_index(drop=True)),
        run_wide,
        asset_key,
    )


def escaped_markdown_table(frame: pd.DataFrame, rows: int | None = PREVIEW_ROWS) -> dg.MarkdownMetadataValue:
    """``preview_table`` with `|` in cells escaped, so keys such as `cmp|003...` keep the columns in place."""
    shown = frame if rows is None else frame.head(rows)
    return preview_table(shown.astype(str).apply(lambda column: column.str.replace("|", "\\|", regex=False)), None)
