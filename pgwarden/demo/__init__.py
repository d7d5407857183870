"""Demo data: a small shop database with (fake) personal data worth masking.

`load_shop(cluster)` creates the owning role (scram-sha-256 password) and the database, then
loads `shop.sql` connected as that role, so the role owns every table:

- customers(id, name, email, ssn, card_number, phone, created_at): 50 rows; card numbers are
  Luhn-valid test numbers (plain, spaced and dashed), SSNs are in valid ranges.
- products(id, sku, name, price, stock): 20 rows.
- orders(id, customer_id, amount, status, created_at): 300 rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from pgwarden.devcluster import DevCluster, conninfo

__all__ = ["DEMO_APP_PASSWORD", "ShopDatabase", "load_shop", "shop_sql"]

DEMO_APP_PASSWORD = "app-demo-password"  # noqa: S105 - throwaway local clusters only
"""The owner's password when none is given (throwaway local clusters only)."""

CUSTOMER_COUNT = 50
PRODUCT_COUNT = 20
ORDER_COUNT = 300


@dataclass(frozen=True)
class ShopDatabase:
    """Where the shop database lives and how its owner logs in."""

    host: str
    port: int
    dbname: str
    owner: str
    password: str

    def dsn(self) -> str:
        return conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.owner,
            password=self.password,
        )


def shop_sql() -> str:
    """The schema and data script (package data)."""
    return resources.files("pgwarden.demo").joinpath("shop.sql").read_text(encoding="utf-8")


def load_shop(
    cluster: DevCluster,
    dbname: str = "shop",
    owner: str = "app",
    password: str = DEMO_APP_PASSWORD,
    *,
    replace: bool = True,
) -> ShopDatabase:
    """Create role `owner` (password auth over scram-sha-256) and database `dbname` owned by
    it, and load the shop tables as that role. An existing database of that name is dropped
    first (replace=True)."""
    cluster.create_role(owner, password, auth="scram-sha-256")
    if replace:
        cluster.drop_database(dbname)
    cluster.create_database(dbname, owner=owner)
    cluster.execute(shop_sql(), dbname=dbname, user=owner, single_transaction=True)
    return ShopDatabase(
        host=cluster.host, port=cluster.port, dbname=dbname, owner=owner, password=password
    )
