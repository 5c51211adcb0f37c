package io.nexgen.spark

import org.apache.spark.sql.Column
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.analysis.TypeCheckResult
import org.apache.spark.sql.catalyst.expressions.{Expression, GenericInternalRow, Literal}
import org.apache.spark.sql.catalyst.expressions.aggregate.{ImperativeAggregate, TypedImperativeAggregate}
import org.apache.spark.sql.types.{DataType, DoubleType, IntegerType, LongType, StructField, StructType}

/**
 * The lag and rolling features of one entity in one pass, as a window aggregate over
 * `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` (which Spark updates one row at a time).
 *
 * It gives, for the row at period `t`, exactly what these SQL windows give (RANGE frames on the period):
 *  - lag k: `max(target) OVER (… RANGE BETWEEN k PRECEDING AND k PRECEDING)`
 *  - for each window w and stat: `avg | stddev_samp | min | max (target) OVER (… RANGE BETWEEN w PRECEDING AND 1 PRECEDING)`
 *  - price lag 1 and `avg(price)` over each window, likewise
 * with the same arithmetic in the same order as Spark's aggregates (Average, CentralMomentAgg/StddevSamp, Max, Min),
 * so the results are the same doubles. Spark's sliding frames recompute every aggregate over the whole frame for
 * every row through its generic row machinery; this keeps the entity's last `maxBack` periods in primitive arrays.
 *
 * Children: the period as a long (days or hours since the epoch), the target and the price as doubles, ints or
 * longs (the price may be a null literal). The lags, min and max keep an int or long column's type and its exact
 * values, compared as integers (as Spark's Max and Min do); mean and std take each value as a double, as Spark's
 * Average and CentralMomentAgg cast their input. The rows of a window partition must arrive in period order (the
 * window's ORDER BY).
 */
case class WindowFeatures(
    period: Expression,
    target: Expression,
    price: Expression,
    lags: Seq[Int],
    windows: Seq[Int],
    stats: Seq[String],
    withPrice: Boolean,
    mutableAggBufferOffset: Int = 0,
    inputAggBufferOffset: Int = 0)
  extends TypedImperativeAggregate[WindowFeatures.State] {

  stats.foreach { s =>
    require(WindowFeatures.Stats.contains(s), s"unknown rolling stat $s (one of ${WindowFeatures.Stats.mkString(", ")})")
  }
  require((lags ++ windows).forall(_ >= 1), "lags and windows count periods back, from 1")

  private val maxBack: Long = (lags ++ windows :+ 1).max.toLong

  override def children: Seq[Expression] = Seq(period, target, price)
  override def nullable: Boolean = false

  // after analysis: a lag, min or max has its column's type; integral columns are also kept as longs
  private lazy val targetType: DataType = target.dataType
  private lazy val priceType: DataType = if (withPrice) price.dataType else DoubleType
  private lazy val targetIntegral = targetType != DoubleType
  private lazy val priceIntegral = priceType != DoubleType

  override def checkInputDataTypes(): TypeCheckResult = {
    val numeric = Set[DataType](DoubleType, IntegerType, LongType)
    val ok = numeric.contains(target.dataType) && (!withPrice || numeric.contains(price.dataType))
    if (ok) TypeCheckResult.TypeCheckSuccess
    else TypeCheckResult.TypeCheckFailure(
      s"nexgen_window_features takes a double, int or long target and price, not ${target.dataType} and ${price.dataType}")
  }

  override lazy val dataType: DataType = StructType(
    lags.map(k => StructField(s"lag_$k", targetType)) ++
      windows.flatMap(w => stats.map(s => StructField(s"${s}_$w", if (s == "min" || s == "max") targetType else DoubleType))) ++
      (if (withPrice) StructField("price_lag_1", priceType) +: windows.map(w => StructField(s"price_mean_$w", DoubleType))
       else Nil))

  override def prettyName: String = "nexgen_window_features"

  override protected def withNewChildrenInternal(newChildren: IndexedSeq[Expression]): WindowFeatures =
    copy(period = newChildren(0), target = newChildren(1), price = newChildren(2))

  override def withNewMutableAggBufferOffset(offset: Int): ImperativeAggregate = copy(mutableAggBufferOffset = offset)
  override def withNewInputAggBufferOffset(offset: Int): ImperativeAggregate = copy(inputAggBufferOffset = offset)

  override def createAggregationBuffer(): WindowFeatures.State = new WindowFeatures.State

  override def update(state: WindowFeatures.State, input: InternalRow): WindowFeatures.State = {
    val p = period.eval(input)
    if (p == null) throw new IllegalArgumentException("nexgen_window_features: a row without a period")
    state.append(p.asInstanceOf[Long], target.eval(input), if (withPrice) price.eval(input) else null, maxBack)
    state
  }

  /** A long computed over an integral column, as that column's type (an int column's values fit an int). */
  private def typed(v: Any, t: DataType): Any = v match {
    case l: Long if t == IntegerType => l.toInt
    case other => other
  }

  private def extreme(state: WindowFeatures.State, ofPrice: Boolean, lo: Long, hi: Long, max: Boolean): Any = {
    val integral = if (ofPrice) priceIntegral else targetIntegral
    val set = if (ofPrice) state.priceSet else state.targetSet
    if (integral) {
      typed(state.extremeLong(if (ofPrice) state.priceLong else state.targetLong, set, lo, hi, max),
        if (ofPrice) priceType else targetType)
    } else if (max) {
      state.max(if (ofPrice) state.price else state.target, set, lo, hi)
    } else {
      state.min(lo, hi)
    }
  }

  override def eval(state: WindowFeatures.State): Any = {
    val out = new Array[Any](dataType.asInstanceOf[StructType].length)
    var i = 0
    val t = state.lastPeriod
    lags.foreach { k => out(i) = extreme(state, ofPrice = false, t - k, t - k, max = true); i += 1 }
    windows.foreach { w =>
      stats.foreach { s =>
        out(i) = s match {
          case "mean" => state.mean(state.target, state.targetSet, t - w, t - 1)
          case "std" => state.stddevSamp(t - w, t - 1)
          case "min" => extreme(state, ofPrice = false, t - w, t - 1, max = false)
          case "max" => extreme(state, ofPrice = false, t - w, t - 1, max = true)
        }
        i += 1
      }
    }
    if (withPrice) {
      out(i) = extreme(state, ofPrice = true, t - 1, t - 1, max = true); i += 1
      windows.foreach { w => out(i) = state.mean(state.price, state.priceSet, t - w, t - 1); i += 1 }
    }
    new GenericInternalRow(out)
  }

  override def merge(buffer: WindowFeatures.State, input: WindowFeatures.State): WindowFeatures.State =
    throw new UnsupportedOperationException("nexgen_window_features is a window function only")
  override def serialize(buffer: WindowFeatures.State): Array[Byte] =
    throw new UnsupportedOperationException("nexgen_window_features is a window function only")
  override def deserialize(bytes: Array[Byte]): WindowFeatures.State =
    throw new UnsupportedOperationException("nexgen_window_features is a window function only")
}

object WindowFeatures {
  val Stats: Set[String] = Set("mean", "std", "min", "max")

  /** The aggregate as a Column (call `.over(window)` on it); price may be null. From Python through py4j. */
  def column(period: Column, target: Column, price: Column, lags: Array[Int], windows: Array[Int],
             stats: Array[String]): Column = {
    val p = if (price == null) Literal(null, DoubleType) else price.expr
    new Column(WindowFeatures(period.expr, target.expr, p, lags.toSeq, windows.toSeq, stats.toSeq,
      price != null).toAggregateExpression())
  }

  /** Spark's order for doubles (SQLOrderingUtil.compareDoubles): NaN above all, -0.0 equal to 0.0. */
  private def greater(x: Double, y: Double): Boolean = x != y && java.lang.Double.compare(x, y) > 0

  /** One entity's rows of the last maxBack periods, oldest first, in growable primitive arrays. */
  final class State {
    var periods: Array[Long] = new Array[Long](64)
    var target: Array[Double] = new Array[Double](64)
    var targetLong: Array[Long] = new Array[Long](64)  // an int or long target's exact values
    var targetSet: Array[Boolean] = new Array[Boolean](64)
    var price: Array[Double] = new Array[Double](64)
    var priceLong: Array[Long] = new Array[Long](64)
    var priceSet: Array[Boolean] = new Array[Boolean](64)
    var start = 0
    var end = 0

    def lastPeriod: Long = periods(end - 1)

    def append(p: Long, t: Any, pr: Any, maxBack: Long): Unit = {
      if (end > start && p < periods(end - 1)) {
        throw new IllegalStateException("nexgen_window_features: rows must arrive in period order")
      }
      while (start < end && periods(start) < p - maxBack) start += 1
      if (end == periods.length) {
        val n = end - start
        val cap = if (n * 2 > periods.length) periods.length * 2 else periods.length
        periods = move(periods, new Array[Long](cap), n)
        target = move(target, new Array[Double](cap), n)
        targetLong = move(targetLong, new Array[Long](cap), n)
        targetSet = move(targetSet, new Array[Boolean](cap), n)
        price = move(price, new Array[Double](cap), n)
        priceLong = move(priceLong, new Array[Long](cap), n)
        priceSet = move(priceSet, new Array[Boolean](cap), n)
        start = 0
        end = n
      }
      periods(end) = p
      targetSet(end) = t != null
      targetLong(end) = exact(t)
      target(end) = double(t)
      priceSet(end) = pr != null
      priceLong(end) = exact(pr)
      price(end) = double(pr)
      end += 1
    }

    /** An input value as a double (Spark's cast of an int or long to double); 0.0 for null. */
    private def double(v: Any): Double = v match {
      case d: Double => d
      case i: Int => i.toDouble
      case l: Long => l.toDouble
      case _ => 0.0
    }

    /** An int or long input value as a long; 0 for a double or null (not read). */
    private def exact(v: Any): Long = v match {
      case i: Int => i.toLong
      case l: Long => l
      case _ => 0L
    }

    private def move[A](from: Array[A], to: Array[A], n: Int): Array[A] = {
      System.arraycopy(from, start, to, 0, n)
      to
    }

    /** Index of the first row with a period >= lo. */
    private def first(lo: Long): Int = {
      var i = end - 1
      while (i >= start && periods(i) >= lo) i -= 1
      i + 1
    }

    /** Average: sum (from 0.0) and count of the non-null values in [lo, hi], then sum / count. */
    def mean(v: Array[Double], set: Array[Boolean], lo: Long, hi: Long): Any = {
      var sum = 0.0
      var n = 0L
      var i = first(lo)
      while (i < end && periods(i) <= hi) {
        if (set(i)) { sum += v(i); n += 1 }
        i += 1
      }
      if (n == 0) null else sum / n.toDouble
    }

    /** StddevSamp as CentralMomentAgg computes it (Welford's update, in row order); null for n < 2. */
    def stddevSamp(lo: Long, hi: Long): Any = {
      var n = 0.0
      var avg = 0.0
      var m2 = 0.0
      var i = first(lo)
      while (i < end && periods(i) <= hi) {
        if (targetSet(i)) {
          val newN = n + 1.0
          val delta = target(i) - avg
          val deltaN = delta / newN
          avg = avg + deltaN
          m2 = m2 + delta * (delta - deltaN)
          n = newN
        }
        i += 1
      }
      if (n == 0.0 || n == 1.0) null else math.sqrt(m2 / (n - 1.0))
    }

    def max(v: Array[Double], set: Array[Boolean], lo: Long, hi: Long): Any = {
      var found = false
      var m = 0.0
      var i = first(lo)
      while (i < end && periods(i) <= hi) {
        if (set(i) && (!found || greater(v(i), m))) { m = v(i); found = true }
        i += 1
      }
      if (found) m else null
    }

    /** Max (or min) of exact integers in [lo, hi]; null when none is set. */
    def extremeLong(v: Array[Long], set: Array[Boolean], lo: Long, hi: Long, max: Boolean): Any = {
      var found = false
      var m = 0L
      var i = first(lo)
      while (i < end && periods(i) <= hi) {
        if (set(i) && (!found || (if (max) v(i) > m else v(i) < m))) { m = v(i); found = true }
        i += 1
      }
      if (found) m else null
    }

    def min(lo: Long, hi: Long): Any = {
      var found = false
      var m = 0.0
      var i = first(lo)
      while (i < end && periods(i) <= hi) {
        if (targetSet(i) && (!found || greater(m, target(i)))) { m = target(i); found = true }
        i += 1
      }
      if (found) m else null
    }
  }
}
